"""GOAL_ABANDONMENT: the agent stopped using tools, kept talking, and never answered."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import END, MAX_WINDOW, MEDIUM, Detector, DetectorConfig, Finding, register, scale, setting
from ..events import RunEvent
from ..run_view import RunView


@dataclass(frozen=True, slots=True)
class GoalAbandonmentConfig(DetectorConfig):
    stall_steps: int = setting(
        4, f"LLM calls after the last tool call that make an abandonment (at most {MAX_WINDOW}).", 1
    )

    def validate(self, path: str) -> None:
        DetectorConfig.validate(self, path)
        if self.stall_steps > MAX_WINDOW:
            raise ValueError(f"{path}.stall_steps: at most {MAX_WINDOW}, got {self.stall_steps}")


@register
class GoalAbandonment(Detector[GoalAbandonmentConfig]):
    failure_type = "GOAL_ABANDONMENT"
    key = "goal_abandonment"
    mode = END
    config_type = GoalAbandonmentConfig
    summary = (
        "The run stalled or ended without a final answer after using a tool, and ≥ `stall_steps` LLM calls "
        "came after its last tool call."
    )

    def check(self, run: RunView, event: RunEvent, config: GoalAbandonmentConfig) -> Finding | None:
        last = run.last_tool_call()
        if run.final_answer or last is None:
            return None
        if run.llm_calls_since_tool < config.stall_steps:
            return None
        return Finding(
            severity=MEDIUM,
            confidence=scale(run.llm_calls_since_tool / config.stall_steps),
            step_index=run.step,
            evidence={
                "last_tool_used": last.name,
                "last_tool_step": last.step,
                "llm_calls_since_tool": run.llm_calls_since_tool,
            },
        )
