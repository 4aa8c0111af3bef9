"""Shared by the scripts our SDK's tests run with the SDK venv's python (tests/oursdk/harness.py).

The OTLP endpoint comes from the standard OTEL_EXPORTER_OTLP_ENDPOINT the harness sets; the
sidecar's API (remote policies) from DT_ENDPOINT / DT_API_KEY when a script asks for them."""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def result(name: str, **values: Any) -> None:
    """The script's one result line (the harness finds it by its "scenario" key)."""
    sys.stdout.write(json.dumps({"scenario": name, **values}) + "\n")
    sys.stdout.flush()


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)
