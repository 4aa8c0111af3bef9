"""RETRY_STORM: the same tool failed several times in a row."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import HIGH, LIVE, MAX_WINDOW, Detector, DetectorConfig, Finding, register, scale, setting
from ..events import TOOL_RESPONDED, RunEvent
from ..run_view import RunView


@dataclass(frozen=True, slots=True)
class RetryStormConfig(DetectorConfig):
    threshold: int = setting(3, f"Consecutive failed calls of one tool (at most {MAX_WINDOW}).", minimum=2)

    def validate(self, path: str) -> None:
        DetectorConfig.validate(self, path)
        if self.threshold > MAX_WINDOW:
            raise ValueError(f"{path}.threshold: at most {MAX_WINDOW}, got {self.threshold}")


@register
class RetryStorm(Detector[RetryStormConfig]):
    failure_type = "RETRY_STORM"
    key = "retry_storm"
    mode = LIVE
    triggers = frozenset({TOOL_RESPONDED})
    config_type = RetryStormConfig
    summary = (
        "`threshold` consecutive tool calls of the same tool all failed (a call still waiting for its "
        "result breaks the run)."
    )

    def check(self, run: RunView, event: RunEvent, config: RetryStormConfig) -> Finding | None:
        calls = run.tools  # read only: no copy per tool result
        index = next((i for i in range(len(calls) - 1, -1, -1) if calls[i].call_id == event.call_id), None)
        if index is None or calls[index].success is not False:
            return None
        name = calls[index].name
        if name is None:
            return None
        # The run of consecutive calls of this tool around the one that just failed, all failed;
        # another tool, a success or a call still waiting for its result ends it.
        start = index
        while start > 0 and calls[start - 1].name == name and calls[start - 1].success is False:
            start -= 1
        end = index
        while end + 1 < len(calls) and calls[end + 1].name == name and calls[end + 1].success is False:
            end += 1
        streak = calls[start : end + 1]
        if len(streak) < config.threshold:
            return None
        hashes = {call.args_hash for call in streak}
        return Finding(
            severity=HIGH,
            confidence=scale(len(streak) / config.threshold),
            step_index=run.event_step,
            evidence={
                "tool": name,
                "consecutive_fails": len(streak),
                "step_indices": [call.step for call in streak],
                "args_identical": len(hashes) == 1 and None not in hashes,
                "error_types": [call.error_type for call in streak],
            },
        )
