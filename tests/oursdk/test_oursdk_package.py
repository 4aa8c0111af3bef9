"""Our SDK as a distribution: its venv holds only the light dependency set, its wheel only the
``dunetrace`` top-level name (the detectors inside it as ``dunetrace._detectors``), and it
type-checks as the wheel lays it out."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.oursdk.typecheck import typecheck

FORBIDDEN = {"duckdb", "grpcio", "aiohttp", "langfuse", "openai", "anthropic", "pydantic", "pydantic-core"}
# What `pip install dunetrace` (ours) brings, written by hand: OpenTelemetry's API, SDK and
# OTLP/HTTP exporter and what they need; pip and setuptools come with every venv.
EXPECTED = {
    "dunetrace",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-semantic-conventions",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-exporter-otlp-proto-common",
    "opentelemetry-exporter-otlp-common",
    "opentelemetry-exporter-http-transport",
    "opentelemetry-proto",
    "protobuf",
    "googleapis-common-protos",
    "requests",
    "urllib3",
    "idna",
    "certifi",
    "charset-normalizer",
    "typing-extensions",
}

PROBE = r"""
import importlib.metadata as m, json, re, sys
names = sorted({re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in m.distributions()})
ours = m.distribution("dunetrace")
tops = sorted({str(f).split("/")[0] for f in ours.files})
import dunetrace
import dunetrace._detectors.engine
loaded = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"names": names, "tops": tops, "loaded": loaded, "version": dunetrace.__version__}))
"""


def test_the_sdk_environment_is_the_light_one(oursdk_python: Path, tmp_path: Path) -> None:
    # from an empty directory: `-c` puts the working directory on sys.path (the repo root would add the daemon)
    done = subprocess.run(
        [str(oursdk_python), "-c", PROBE], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    )
    probe = json.loads(done.stdout)
    installed = set(probe["names"]) - {"pip", "setuptools"}
    assert installed & FORBIDDEN == set()
    assert installed == EXPECTED
    assert probe["tops"] == ["dunetrace", "dunetrace-0.6.0.dev0.dist-info"]
    assert probe["version"] == "0.6.0.dev0"
    # importing the SDK loads none of the daemon's stacks and leaves no top-level 'detectors' behind
    assert set(probe["loaded"]) & {"duckdb", "grpc", "aiohttp", "langfuse", "openai", "anthropic", "pydantic"} == set()
    assert "detectors" not in probe["loaded"]


def test_the_sdk_type_checks_as_the_wheel_lays_it_out() -> None:
    done = typecheck()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout
