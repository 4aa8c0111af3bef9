"""REASONING_STALL: many LLM calls for few tool calls."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import LIVE, MEDIUM, Detector, DetectorConfig, Finding, register, scale, setting
from ..events import LLM_CALLED, RunEvent
from ..run_view import RunView


@dataclass(frozen=True, slots=True)
class ReasoningStallConfig(DetectorConfig):
    min_llm_calls: int = setting(5, "LLM calls before the ratio is judged.", 1)
    ratio: float = setting(4.0, "LLM calls / max(tool calls, 1) at or above this is a stall.", 1.0)


@register
class ReasoningStall(Detector[ReasoningStallConfig]):
    failure_type = "REASONING_STALL"
    key = "reasoning_stall"
    mode = LIVE
    triggers = frozenset({LLM_CALLED})
    config_type = ReasoningStallConfig
    summary = "At least `min_llm_calls` LLM calls and LLM calls / max(tool calls, 1) ≥ `ratio`."

    def check(self, run: RunView, event: RunEvent, config: ReasoningStallConfig) -> Finding | None:
        if run.llm_calls < config.min_llm_calls:
            return None
        ratio = run.llm_calls / max(run.tool_calls, 1)
        if ratio < config.ratio:
            return None
        return Finding(
            severity=MEDIUM,
            confidence=scale(ratio / config.ratio),
            step_index=run.event_step,
            evidence={"llm_calls": run.llm_calls, "tool_calls": run.tool_calls, "ratio": round(ratio, 3)},
        )
