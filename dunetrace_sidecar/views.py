"""JSON views of stored things, shared by the API and the alert payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from detectors.base import Signal
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
