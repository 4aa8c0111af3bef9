"""``emit_as_json=True``: one NDJSON line per run event on stdout, for Loki/Promtail.

Each line carries ``ts`` (RFC3339 with nanoseconds), ``level``, ``logger``, ``event_type``,
``agent_id``, ``run_id``, ``step_index`` and ``payload`` — the event's reduced payload (hashes,
lengths, names, numbers), never content."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

LOGGER = "dunetrace"
_lock = threading.Lock()


def rfc3339_nano(ts_ns: int) -> str:
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def level_of(event_type: str, payload: Mapping[str, Any]) -> str:
    if event_type == "run.errored" or payload.get("error_type"):
        return "error"
    if event_type == "policy.triggered":
        return "warning"
    return "info"


def write_line(ts_ns: int, event_type: str, agent_id: str, run_id: str, step: int, payload: Mapping[str, Any]) -> None:
    line = json.dumps(
        {
            "ts": rfc3339_nano(ts_ns),
            "level": level_of(event_type, payload),
            "logger": LOGGER,
            "event_type": event_type,
            "agent_id": agent_id,
            "run_id": run_id,
            "step_index": step,
            "payload": dict(payload),
        },
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
