"""FIRST_STEP_FAILURE: the run failed before it got going."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import LIVE, MEDIUM, Detector, DetectorConfig, Finding, register, setting
from ..events import LLM_RESPONDED, RUN_ERRORED, TOOL_RESPONDED, RunEvent
from ..run_view import RunView


@dataclass(frozen=True, slots=True)
class FirstStepFailureConfig(DetectorConfig):
    max_step: int = setting(2, "Failures at or before this step count as first-step failures.", 1)


@register
class FirstStepFailure(Detector[FirstStepFailureConfig]):
    failure_type = "FIRST_STEP_FAILURE"
    key = "first_step_failure"
    mode = LIVE
    triggers = frozenset({RUN_ERRORED, LLM_RESPONDED, TOOL_RESPONDED})
    config_type = FirstStepFailureConfig
    summary = (
        "Within the first `max_step` steps the run errored, an LLM answer was empty, or a tool call failed "
        "(the first of these wins)."
    )

    def check(self, run: RunView, event: RunEvent, config: FirstStepFailureConfig) -> Finding | None:
        step = run.event_step
        if step > config.max_step:
            return None
        evidence: dict[str, object]
        if event.kind == RUN_ERRORED:
            evidence, confidence = {"trigger": "run_errored", "failed_step": step}, 0.90
        elif event.kind == LLM_RESPONDED:
            call = run.llm.get(event.call_id)
            if call is None or not call.empty:
                return None
            evidence, confidence = {"trigger": "empty_llm_response", "failed_step": step}, 0.88
        else:
            if event.payload.get("success", True):
                return None
            tool = event.payload.get("tool_name")
            evidence, confidence = {"trigger": "tool_failure", "failed_step": step, "tool": tool}, 0.85
        return Finding(severity=MEDIUM, confidence=confidence, step_index=step, evidence=evidence)
