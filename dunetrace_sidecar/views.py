"""JSON views of stored things, shared by the API and the alert payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from detectors.base import Signal
from detectors.events import LLM_CALLED, LLM_RESPONDED, RUN_STARTED, TOOL_CALLED, RunEvent
from explain.templates import explain


def iso(ns: int | None) -> str | None:
    if not ns:
        return None
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest // 1000:06d}Z"


def signal_view(signal: Signal) -> dict[str, Any]:
    return {
        "signal_id": signal.signal_id,
        "run_id": signal.run_id,
        "agent_id": signal.agent_id,
        "failure_type": signal.failure_type,
        "severity": signal.severity,
        "confidence": signal.confidence,
        "step_index": signal.step_index,
        "evidence": signal.evidence,
        "detected_at": iso(signal.detected_ns),
        "mode": signal.mode,
        "shadow": signal.shadow,
        "explanation": explain(signal.failure_type, signal.evidence, signal.confidence).as_dict(),
    }


# What a run's instrumentation did not send (GET /v1/runs/{id} "not_seen"), in this order.
NOT_SEEN = ("tool_names", "content", "root_span")


def not_seen(events: list[RunEvent]) -> list[str]:
    """From a run's folded events: the facts no detector could judge because they were not sent."""
    missing: set[str] = set()
    responded = {e.call_id: e.payload for e in events if e.kind == LLM_RESPONDED}
    for event in events:
        if event.kind == TOOL_CALLED and "tool_name" not in event.payload:
            missing.add("tool_names")
        elif (
            event.kind == LLM_CALLED
            and "prompt_hash" not in event.payload
            and "output_length" not in responded.get(event.call_id, {})
        ):
            missing.add("content")
    if not any(e.kind == RUN_STARTED for e in events):
        missing.add("root_span")
    return [item for item in NOT_SEEN if item in missing]
