"""LLM_TRUNCATION_LOOP: answers keep being cut off at the token limit."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import HIGH, LIVE, Detector, DetectorConfig, Finding, register, scale, setting
from ..events import LLM_RESPONDED, RunEvent
from ..run_view import RunView


@dataclass(frozen=True, slots=True)
class LlmTruncationLoopConfig(DetectorConfig):
    threshold: int = setting(2, "LLM answers with finish_reason `length` (Anthropic `max_tokens` counts).", 1)


@register
class LlmTruncationLoop(Detector[LlmTruncationLoopConfig]):
    failure_type = "LLM_TRUNCATION_LOOP"
    key = "llm_truncation_loop"
    mode = LIVE
    triggers = frozenset({LLM_RESPONDED})
    config_type = LlmTruncationLoopConfig
    summary = "`threshold` LLM answers ended with finish_reason `length` (normalised: `max_tokens` counts)."

    def check(self, run: RunView, event: RunEvent, config: LlmTruncationLoopConfig) -> Finding | None:
        if run.truncations < config.threshold:
            return None
        return Finding(
            severity=HIGH,
            confidence=scale(run.truncations / config.threshold),
            step_index=run.event_step,
            evidence={
                "truncation_count": run.truncations,
                "total_llm_calls": run.llm_calls,
                "first_truncation_step": run.first_truncation_step,
                "last_truncation_step": run.last_truncation_step,
            },
        )
