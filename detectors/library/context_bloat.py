"""CONTEXT_BLOAT: the prompt keeps growing call after call."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import LIVE, MEDIUM, Detector, DetectorConfig, Finding, register, scale, setting
from ..events import LLM_CALLED, RunEvent
from ..run_view import RunView

MIN_FIRST_TOKENS = 10  # a first prompt this small makes any growth ratio meaningless


@dataclass(frozen=True, slots=True)
class ContextBloatConfig(DetectorConfig):
    min_calls: int = setting(3, "LLM calls with prompt token counts needed before judging growth.", 2)
    min_last_tokens: int = setting(2000, "The latest prompt must have at least this many tokens.", 1)
    growth_factor: float = setting(3.0, "Latest / first prompt tokens at or above this is bloat.", 1.0)


@register
class ContextBloat(Detector[ContextBloatConfig]):
    failure_type = "CONTEXT_BLOAT"
    key = "context_bloat"
    mode = LIVE
    triggers = frozenset({LLM_CALLED})
    config_type = ContextBloatConfig
    summary = (
        "At least `min_calls` LLM calls with token counts; the first prompt ≥ 10 tokens, the latest ≥ "
        "`min_last_tokens`, and latest / first ≥ `growth_factor`."
    )

    def check(self, run: RunView, event: RunEvent, config: ContextBloatConfig) -> Finding | None:
        first, last = run.first_tokens, run.last_tokens
        if run.token_calls < config.min_calls or first is None or last is None:
            return None
        if first < MIN_FIRST_TOKENS or last < config.min_last_tokens:
            return None
        growth = last / first
        if growth < config.growth_factor:
            return None
        return Finding(
            severity=MEDIUM,
            confidence=scale(growth / config.growth_factor),
            step_index=run.event_step,
            evidence={
                "first_tokens": first,
                "last_tokens": last,
                "growth_factor": round(growth, 3),
                "llm_call_count": run.token_calls,
                "token_growth_sequence": run.token_sequence(),
            },
        )
