"""EMPTY_LLM_RESPONSE: the model finished normally and said nothing."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import HIGH, LIVE, Detector, DetectorConfig, Finding, register
from ..events import LLM_RESPONDED, RunEvent
from ..run_view import RunView


@dataclass(frozen=True, slots=True)
class EmptyLlmResponseConfig(DetectorConfig):
    pass


@register
class EmptyLlmResponse(Detector[EmptyLlmResponseConfig]):
    failure_type = "EMPTY_LLM_RESPONSE"
    key = "empty_llm_response"
    mode = LIVE
    triggers = frozenset({LLM_RESPONDED})
    config_type = EmptyLlmResponseConfig
    summary = "An LLM answer with finish_reason `stop`, no text (output_length 0) and no tool call requested."

    def check(self, run: RunView, event: RunEvent, config: EmptyLlmResponseConfig) -> Finding | None:
        if run.empty_responses < 1:
            return None
        return Finding(
            severity=HIGH,
            confidence=0.95,
            step_index=run.event_step,
            evidence={"occurrences": run.empty_responses, "first_step": run.first_empty_step},
        )
