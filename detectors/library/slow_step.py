"""SLOW_STEP: one tool or LLM call took far too long."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import HIGH, LIVE, MEDIUM, Detector, DetectorConfig, Finding, register, scale, setting
from ..events import LLM_RESPONDED, TOOL_RESPONDED, RunEvent
from ..run_view import RunView

HIGH_AT_RATIO = 5.0


@dataclass(frozen=True, slots=True)
class SlowStepConfig(DetectorConfig):
    tool_ms: float = setting(15000, "A tool call longer than this (milliseconds) is slow.", 1)
    llm_ms: float = setting(30000, "An LLM call longer than this (milliseconds) is slow.", 1)


@register
class SlowStep(Detector[SlowStepConfig]):
    failure_type = "SLOW_STEP"
    key = "slow_step"
    mode = LIVE
    triggers = frozenset({TOOL_RESPONDED, LLM_RESPONDED})
    config_type = SlowStepConfig
    summary = "A tool call took more than `tool_ms` or an LLM call more than `llm_ms`; HIGH at 5× the threshold."

    def check(self, run: RunView, event: RunEvent, config: SlowStepConfig) -> Finding | None:
        duration = event.payload.get("latency_ms")
        if not isinstance(duration, (int, float)):
            return None
        kind, threshold = ("tool", config.tool_ms) if event.kind == TOOL_RESPONDED else ("llm", config.llm_ms)
        if duration <= threshold:
            return None
        ratio = duration / threshold
        return Finding(
            severity=HIGH if ratio >= HIGH_AT_RATIO else MEDIUM,
            confidence=scale(ratio),
            step_index=run.event_step,
            evidence={
                "step_index": run.event_step,
                "duration_ms": duration,
                "threshold_ms": threshold,
                "kind": kind,
                "ratio": round(ratio, 3),
            },
        )
