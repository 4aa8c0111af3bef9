"""TOOL_LOOP: one tool dominates the recent tool calls."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import HIGH, LIVE, MAX_WINDOW, MEDIUM, Detector, DetectorConfig, Finding, register, scale, setting
from ..events import TOOL_CALLED, RunEvent
from ..run_view import RunView


@dataclass(frozen=True, slots=True)
class ToolLoopConfig(DetectorConfig):
    threshold: int = setting(3, "Calls of one tool among the recent ones that make a loop.", minimum=2)
    window: int = setting(5, f"How many recent tool calls to look at (at most {MAX_WINDOW}).", minimum=2)

    def validate(self, path: str) -> None:
        DetectorConfig.validate(self, path)
        if self.window > MAX_WINDOW:
            raise ValueError(f"{path}.window: at most {MAX_WINDOW}, got {self.window}")


@register
class ToolLoop(Detector[ToolLoopConfig]):
    failure_type = "TOOL_LOOP"
    key = "tool_loop"
    mode = LIVE
    triggers = frozenset({TOOL_CALLED})
    config_type = ToolLoopConfig
    summary = (
        "Among the last `window` tool calls one tool appears `threshold` times; HIGH when those calls' "
        "arguments are identical, else MEDIUM."
    )

    def check(self, run: RunView, event: RunEvent, config: ToolLoopConfig) -> Finding | None:
        recent = run.recent_tools(config.window)
        # The call this event is about: the newest one, or one whose name was learnt late.
        name = (run.tool_of(event) or recent[-1]).name
        if name is None:
            return None  # the instrumentation withheld the tool's name: no loop can be seen
        same = [call for call in recent if call.name == name]
        if len(same) < config.threshold:
            return None
        hashes = {call.args_hash for call in same}
        identical = len(hashes) == 1 and None not in hashes
        steps = [call.step for call in same]
        return Finding(
            severity=HIGH if identical else MEDIUM,
            confidence=scale(run.tool_counts[name] / config.threshold),
            step_index=run.event_step,
            evidence={
                "tool": name,
                "count": len(same),
                "window": config.window,
                "first_step": steps[0],
                "last_step": steps[-1],
                "step_indices": steps,
                "args_identical": identical,
            },
        )
