"""CASCADING_TOOL_FAILURE: the last tool calls all failed, across more than one tool."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import HIGH, LIVE, MAX_WINDOW, Detector, DetectorConfig, Finding, register, scale, setting
from ..events import TOOL_RESPONDED, RunEvent
from ..run_view import RunView


@dataclass(frozen=True, slots=True)
class CascadingToolFailureConfig(DetectorConfig):
    threshold: int = setting(3, f"Consecutive failed tool calls, of at least two tools (at most {MAX_WINDOW}).", 2)

    def validate(self, path: str) -> None:
        DetectorConfig.validate(self, path)
        if self.threshold > MAX_WINDOW:
            raise ValueError(f"{path}.threshold: at most {MAX_WINDOW}, got {self.threshold}")


@register
class CascadingToolFailure(Detector[CascadingToolFailureConfig]):
    failure_type = "CASCADING_TOOL_FAILURE"
    key = "cascading_tool_failure"
    mode = LIVE
    triggers = frozenset({TOOL_RESPONDED})
    config_type = CascadingToolFailureConfig
    summary = "The last `threshold` or more tool calls all failed and span at least two distinct tools."

    def check(self, run: RunView, event: RunEvent, config: CascadingToolFailureConfig) -> Finding | None:
        failed = []
        for call in reversed(run.tools):
            if call.success is not False:
                break
            failed.append(call)
        if len(failed) < config.threshold:
            return None
        tools = sorted({call.name or "unknown" for call in failed})  # failed calls come from tool spans: named
        if len(tools) < 2:
            return None
        return Finding(
            severity=HIGH,
            confidence=scale(len(failed) / config.threshold),
            step_index=run.event_step,
            evidence={
                "consecutive_failures": len(failed),
                "distinct_tools": tools,
                "first_fail_step": failed[-1].step,
            },
        )
