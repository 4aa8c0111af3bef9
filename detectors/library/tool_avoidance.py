"""TOOL_AVOIDANCE: tools were there, the agent answered without using any."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import END, MEDIUM, Detector, DetectorConfig, Finding, register, setting
from ..events import RunEvent
from ..run_view import RunView


@dataclass(frozen=True, slots=True)
class ToolAvoidanceConfig(DetectorConfig):
    min_llm_calls: int = setting(2, "LLM calls a run needs before avoiding tools counts.", 1)


@register
class ToolAvoidance(Detector[ToolAvoidanceConfig]):
    failure_type = "TOOL_AVOIDANCE"
    key = "tool_avoidance"
    mode = END
    config_type = ToolAvoidanceConfig
    summary = "The run gave a final answer with tools available, zero tool calls and ≥ `min_llm_calls` LLM calls."

    def check(self, run: RunView, event: RunEvent, config: ToolAvoidanceConfig) -> Finding | None:
        if not run.final_answer or not run.available_tools or run.tool_calls:
            return None
        if run.llm_calls < config.min_llm_calls:
            return None
        return Finding(
            severity=MEDIUM,
            confidence=0.75,
            step_index=run.step,
            evidence={"available_tools": list(run.available_tools), "llm_calls": run.llm_calls},
        )
