"""The sidecar's detection engine, imported from the detectors this wheel carries
(``dunetrace._detectors``: the repository's ``detectors/``, included at build time)."""

from __future__ import annotations

from ._detectors.engine import DetectionEngine
from ._detectors.run_view import RunView

__all__ = ["DetectionEngine", "RunView"]
