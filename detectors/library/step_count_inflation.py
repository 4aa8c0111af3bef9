"""STEP_COUNT_INFLATION: this run takes far more steps than the agent usually needs."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import LIVE, MEDIUM, Detector, DetectorConfig, Finding, register, scale, setting
from ..events import LLM_CALLED, RETRIEVAL_CALLED, TOOL_CALLED, RunEvent
from ..run_view import RunView


@dataclass(frozen=True, slots=True)
class StepCountInflationConfig(DetectorConfig):
    inflation_factor: float = setting(2.0, "Steps above this multiple of the agent's P75 are inflated.", 1.0)


@register
class StepCountInflation(Detector[StepCountInflationConfig]):
    failure_type = "STEP_COUNT_INFLATION"
    key = "step_count_inflation"
    mode = LIVE
    triggers = frozenset({LLM_CALLED, TOOL_CALLED, RETRIEVAL_CALLED})
    config_type = StepCountInflationConfig
    summary = (
        "The run's steps exceed `inflation_factor` × the P75 step count of the agent's last 50 completed runs "
        "(needs at least 10 of them)."
    )

    def check(self, run: RunView, event: RunEvent, config: StepCountInflationConfig) -> Finding | None:
        p75 = run.baseline_p75
        if p75 is None or p75 <= 0:
            return None
        limit = p75 * config.inflation_factor
        if run.step <= limit:
            return None
        return Finding(
            severity=MEDIUM,
            confidence=scale(run.step / limit),
            step_index=run.event_step,
            evidence={
                "current_steps": run.step,
                "baseline_p75": p75,
                "inflation_ratio": round(run.step / p75, 3),
            },
        )
