"""The sidecar's detection engine, imported from the detectors this wheel carries.

``detectors/settings.py`` still reaches its library with one absolute import (``from detectors
import library``), which has no ``detectors`` package to find inside this wheel. Until that line
is relative, the library is imported here first (so the package already has the attribute) and
the name ``detectors`` points at our copy only for the duration of the engine's import."""

from __future__ import annotations

import sys

from . import _detectors
from ._detectors import library  # noqa: F401 - registers the 15 detectors

_added = "detectors" not in sys.modules
if _added:
    sys.modules["detectors"] = _detectors
try:
    from ._detectors.engine import DetectionEngine
    from ._detectors.run_view import RunView
finally:
    if _added:
        sys.modules.pop("detectors", None)

__all__ = ["DetectionEngine", "RunView"]
