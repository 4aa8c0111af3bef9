"""The README's generated references stay equal to what generates them."""

from __future__ import annotations

from detectors.base import REGISTRY
from detectors.settings import reference_markdown
from tests.sidecar import ROOT


def between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def test_readme_detector_reference_is_the_generated_table() -> None:
    readme = (ROOT / "README.md").read_text()
    assert between(readme, "<!-- detectors:start -->", "<!-- detectors:end -->") == reference_markdown().strip()


def test_every_detector_is_documented_with_its_settings() -> None:
    table = reference_markdown()
    assert len(REGISTRY) == 15
    for failure_type, detector in REGISTRY.items():
        assert f"`{failure_type}` (`{detector.key}`)" in table
