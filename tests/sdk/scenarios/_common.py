"""What every scenario script shares (standard library only: it runs in the SDK's own venv, .sdkenv/).

Inputs come from environment variables set by tests/sdk/harness.py:
    DT_ENDPOINT            the URL given to Dunetrace(endpoint=...): the daemon's API, or a proxy in front of it
    DT_API_KEY             the key given to Dunetrace(api_key=...)
    DT_API_URL             the daemon's API itself (only for wait_stored)
    FAKE_OPENAI_BASE_URL   the fake OpenAI server's base URL (ends in /v1)
    DT_WAIT_STORED_S       when set, wait_stored() polls the daemon this long at most
The one output is a JSON line on stdout with the key "scenario" (emit_result); everything else goes to stderr
(the SDK's warnings too), except the SDK's own NDJSON lines in the emit_as_json scenario.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

FAKE_OPENAI_KEY = "sk-fake-not-a-real-key"


def setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit(f"scenario needs the environment variable {name}")
    return value


def client_kwargs() -> dict[str, Any]:
    """The documented way to point the SDK at a backend: Dunetrace(api_key=..., endpoint=...)."""
    return {"api_key": env("DT_API_KEY"), "endpoint": env("DT_ENDPOINT")}


def emit_result(name: str, **fields: Any) -> None:
    print(json.dumps({"scenario": name, **fields}, sort_keys=True), flush=True)


def wait_stored(run_ids: list[str]) -> dict[str, Any]:
    """Poll GET /v1/runs/{id} on the daemon until every run is stored and no longer running, at most
    DT_WAIT_STORED_S seconds (used where the SDK must finish retrying before dt.shutdown(), which drops retries
    not yet due). Answers run_id -> last HTTP status seen; never raises."""
    limit = float(os.environ.get("DT_WAIT_STORED_S", "0") or 0)
    seen: dict[str, Any] = dict.fromkeys(run_ids)
    if limit <= 0:
        return seen
    deadline = time.monotonic() + limit
    pending = set(run_ids)
    while pending and time.monotonic() < deadline:
        for run_id in sorted(pending):
            request = urllib.request.Request(
                f"{env('DT_API_URL')}/v1/runs/{run_id}", headers={"Authorization": f"Bearer {env('DT_API_KEY')}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    body = json.loads(response.read())
                    seen[run_id] = response.status
                    if body.get("status") not in (None, "running"):
                        pending.discard(run_id)
            except urllib.error.HTTPError as exc:
                seen[run_id] = exc.code
            except (OSError, ValueError) as exc:
                seen[run_id] = type(exc).__name__
        if pending:
            time.sleep(0.2)
    return seen
