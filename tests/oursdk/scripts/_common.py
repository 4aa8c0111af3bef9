"""Shared by the scripts our SDK's tests run with the SDK venv's python (tests/oursdk/harness.py).

The OTLP endpoint comes from the standard OTEL_EXPORTER_OTLP_ENDPOINT the harness sets; the
sidecar's API (remote policies) from DT_ENDPOINT / DT_API_KEY when a script asks for them."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any


def result(name: str, **values: Any) -> None:
    """The script's one result line (the harness finds it by its "scenario" key)."""
    sys.stdout.write(json.dumps({"scenario": name, **values}) + "\n")
    sys.stdout.flush()


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def current_run() -> Any:
    """The run of the request being handled (the middleware's); fails the script outside one."""
    from dunetrace import get_current_run

    run = get_current_run()
    assert run is not None, "no run in the handler"
    return run


def one_step(run: Any) -> Any:
    """One step before a request fails, so the failing run has a step to show."""
    run.tool_called("prepare", {"ok": True})
    run.tool_responded("prepare", output="ready")
    return run


def get_together(base: str, tags: Sequence[str]) -> dict[str, Any]:
    """GET {base}/together/<tag> for every tag at the same time (one thread each); the JSON replies."""
    import requests

    replies: dict[str, Any] = {}

    def call(tag: str) -> None:
        replies[tag] = requests.get(f"{base}/together/{tag}", timeout=15).json()

    callers = [threading.Thread(target=call, args=(tag,)) for tag in tags]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=20)
    return replies
