"""PROMPT_INJECTION_SIGNAL: input, a tool result or a retrieved document tries to take over."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import CRITICAL, LIVE, Detector, DetectorConfig, Finding, register, scale
from ..events import (
    LLM_CALLED,
    LLM_CONTENT,
    RETRIEVAL_RESPONDED,
    RUN_STARTED,
    TOOL_RESPONDED,
    RunEvent,
)
from ..run_view import RunView


@dataclass(frozen=True, slots=True)
class PromptInjectionConfig(DetectorConfig):
    pass


@register
class PromptInjection(Detector[PromptInjectionConfig]):
    failure_type = "PROMPT_INJECTION_SIGNAL"
    key = "prompt_injection_signal"
    mode = LIVE
    triggers = frozenset({RUN_STARTED, LLM_CALLED, LLM_CONTENT, TOOL_RESPONDED, RETRIEVAL_RESPONDED})
    config_type = PromptInjectionConfig
    summary = (
        "User or system input, a tool result or a retrieved document matched known injection / jailbreak "
        "patterns (scanned at the receiver, before hashing, message by message: a pattern is found within one "
        "message, and a message the agent resends in every call is scanned once)."
    )

    def check(self, run: RunView, event: RunEvent, config: PromptInjectionConfig) -> Finding | None:
        found = event.payload.get("injection")
        if not found or not found.get("matched_patterns"):
            return None
        patterns = list(found["matched_patterns"])
        return Finding(
            severity=CRITICAL,
            confidence=scale(len(patterns)),
            step_index=run.event_step,
            evidence={
                "matched_patterns": patterns,
                "matched_pattern_count": len(patterns),
                "source": found.get("source", "input"),
                "input_length": found.get("input_length"),
            },
        )
