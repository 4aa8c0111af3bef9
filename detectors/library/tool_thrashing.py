"""TOOL_THRASHING: the recent tool calls alternate strictly between two tools."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import HIGH, LIVE, MAX_WINDOW, Detector, DetectorConfig, Finding, register, setting
from ..events import TOOL_CALLED, RunEvent
from ..run_view import RunView


@dataclass(frozen=True, slots=True)
class ToolThrashingConfig(DetectorConfig):
    window: int = setting(6, f"Recent tool calls that must alternate A-B-A-B… (at most {MAX_WINDOW}).", minimum=4)

    def validate(self, path: str) -> None:
        DetectorConfig.validate(self, path)
        if self.window > MAX_WINDOW:
            raise ValueError(f"{path}.window: at most {MAX_WINDOW}, got {self.window}")


@register
class ToolThrashing(Detector[ToolThrashingConfig]):
    failure_type = "TOOL_THRASHING"
    key = "tool_thrashing"
    mode = LIVE
    triggers = frozenset({TOOL_CALLED})
    config_type = ToolThrashingConfig
    summary = "The last `window` tool calls alternate strictly between exactly two tools."

    def check(self, run: RunView, event: RunEvent, config: ToolThrashingConfig) -> Finding | None:
        recent = run.recent_tools(config.window)
        if len(recent) < config.window:
            return None
        names = [call.name for call in recent]
        tool_a, tool_b = names[0], names[1]
        if tool_a == tool_b or None in names:
            return None
        if any(name != (tool_a if i % 2 == 0 else tool_b) for i, name in enumerate(names)):
            return None
        return Finding(
            severity=HIGH,
            confidence=0.90,
            step_index=run.event_step,
            evidence={"tool_a": tool_a, "tool_b": tool_b, "pattern": names},
        )
