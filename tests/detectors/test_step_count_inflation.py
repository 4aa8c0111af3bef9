"""STEP_COUNT_INFLATION (spec §3), live, on every *.called.

The run's step count > `step_count_inflation.inflation_factor` (2.0) × the P75 step count of this
agent's last 50 completed runs (needs ≥ 10 such runs; the baseline is kept current as runs
complete). MEDIUM, confidence scale(steps / (p75 × factor)). Evidence: current_steps,
baseline_p75, inflation_ratio.

The engine reads the baseline through a callable (agent id → P75 or None); the daemon's is
``dunetrace_sidecar.baseline.BaselineCache.p75``, tested at the end of this file.
"""

from __future__ import annotations

import pytest

from detectors.events import LLM_CALLED, RETRIEVAL_CALLED, TOOL_CALLED
from dunetrace_sidecar.baseline import BaselineCache
from tests.detectors.runs import Replay, RunBuilder, conf, replay

TYPE = "STEP_COUNT_INFLATION"


def steps(n: int) -> RunBuilder:
    """A run of n steps mixing LLM, tool and retrieval calls (all count as steps)."""
    b = RunBuilder()
    kinds = ["llm", "tool", "retrieval"]
    for i in range(n):
        kind = kinds[i % 3]
        if kind == "llm":
            b.llm(tools=["search"])
        elif kind == "tool":
            b.tool("search")
        else:
            b.retrieval()
    return b


def called_positions(b: RunBuilder) -> list[int]:
    return [i for i, e in enumerate(b.events) if e.kind in (LLM_CALLED, TOOL_CALLED, RETRIEVAL_CALLED)]


def test_fires_on_the_step_past_twice_the_p75_while_the_run_is_going() -> None:
    b = steps(11)
    events = b.end().build()

    r = replay(events, baseline=lambda agent: 5.0)

    hit = r.hit(TYPE)
    assert hit.index == called_positions(b)[10]  # the 11th step; 10 = 2 × 5 is not over
    assert hit.outcome is None
    assert hit.signal.severity == "MEDIUM"
    assert hit.signal.confidence == conf(0.54)  # scale(11/10) = 0.5 + 0.1 * 0.4 = 0.54
    assert hit.signal.step_index == 11
    assert hit.signal.mode == "live"
    assert hit.signal.evidence == {"current_steps": 11, "baseline_p75": 5.0, "inflation_ratio": 2.2}


def test_exactly_twice_the_p75_does_not_fire() -> None:
    assert replay(steps(10).end().build(), baseline=lambda agent: 5.0).of(TYPE) == []


@pytest.mark.parametrize(
    ("p75", "fires_at", "confidence", "ratio"),
    [
        (4.5, 10, 0.544, 2.222),  # limit 9: scale(10/9) = 0.5 + (1/9) * 0.4 = 0.544
        (3.0, 7, 0.567, 2.333),  # limit 6: scale(7/6) = 0.5 + (1/6) * 0.4 = 0.567
    ],
)
def test_confidence_by_baseline(p75: float, fires_at: int, confidence: float, ratio: float) -> None:
    b = steps(fires_at + 3)
    hit = replay(b.build(), baseline=lambda agent: p75).hit(TYPE)
    assert hit.index == called_positions(b)[fires_at - 1]
    assert hit.signal.confidence == conf(confidence)
    assert hit.signal.evidence["current_steps"] == fires_at
    assert hit.signal.evidence["inflation_ratio"] == pytest.approx(ratio, abs=1e-3)


def test_a_baseline_arriving_mid_run_is_used_from_the_next_event() -> None:
    baseline: dict[str, float | None] = {"agent": None}
    b = steps(12)
    r = Replay(baseline=lambda agent: baseline[agent])
    r.feed(b.build())
    assert r.of(TYPE) == []  # too few completed runs for a baseline

    baseline["agent"] = 3.0  # enough runs completed meanwhile
    b.llm()
    r.feed(b.events[-2:])

    hit = r.hit(TYPE)
    assert hit.signal.step_index == 13
    assert hit.signal.confidence == conf(0.967)  # scale(13/6) = 0.5 + (13/6 - 1) * 0.4 = 0.967
    assert hit.signal.evidence["current_steps"] == 13
    assert hit.signal.evidence["baseline_p75"] == 3.0
    assert hit.signal.evidence["inflation_ratio"] == pytest.approx(4.333, abs=1e-3)  # 13 / 3


def test_no_baseline_never_fires() -> None:
    assert replay(steps(100).end().build(), baseline=lambda agent: None).of(TYPE) == []


def test_the_baseline_is_the_agents_own() -> None:
    baselines = {"fast-agent": 2.0, "new-agent": None}
    events = steps(8).build()
    assert replay(events, agent_id="fast-agent", baseline=baselines.get).hit(TYPE).signal.step_index == 5
    assert replay(events, agent_id="new-agent", baseline=baselines.get).of(TYPE) == []


def test_factor_from_settings() -> None:
    b = steps(16)
    config = {"step_count_inflation": {"inflation_factor": 3.0}}
    hit = replay(b.build(), config, baseline=lambda agent: 5.0).hit(TYPE)
    assert hit.index == called_positions(b)[15]  # limit 15
    assert hit.signal.confidence == conf(0.527)  # scale(16/15) = 0.5 + (1/15) * 0.4 = 0.527
    assert hit.signal.evidence == {"current_steps": 16, "baseline_p75": 5.0, "inflation_ratio": 3.2}


# --- the baseline: P75 of the agent's last 50 completed runs, needing at least 10 ------------


def test_baseline_needs_ten_completed_runs() -> None:
    cache = BaselineCache(lambda agent, n: [])
    for _ in range(9):
        cache.record("agent", 4)
    assert cache.p75("agent") is None
    cache.record("agent", 4)
    assert cache.p75("agent") == 4


def test_baseline_kept_current_as_runs_complete_during_a_run() -> None:
    cache = BaselineCache(lambda agent, n: [])
    b = steps(12)
    r = Replay(baseline=cache.p75)
    r.feed(b.build()[:4])  # two steps
    for _ in range(10):
        cache.record("agent", 4)  # other runs of the agent complete meanwhile: P75 4, limit 8
    r.feed(b.build()[4:])
    hit = r.hit(TYPE)
    assert hit.signal.step_index == 9
    assert hit.signal.evidence["baseline_p75"] == 4


def test_baseline_is_the_last_fifty_runs() -> None:
    cache = BaselineCache(lambda agent, n: [])
    for _ in range(50):
        cache.record("agent", 100)
    for _ in range(50):
        cache.record("agent", 5)
    assert cache.p75("agent") == 5  # the fifty runs of 100 steps rolled out


def test_baseline_loaded_from_the_store_newest_first() -> None:
    cache = BaselineCache(lambda agent, n: [6] * 12 if agent == "agent" else [])
    cache.install(cache.load(cache.missing({"agent", "other"})))
    assert cache.p75("agent") == 6
    assert cache.p75("other") is None
