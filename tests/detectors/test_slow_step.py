"""SLOW_STEP (spec §3), live, on tool.responded / llm.responded.

A tool call took > `slow_step.tool_ms` (15000) or an LLM call > `slow_step.llm_ms` (30000).
MEDIUM, HIGH at ≥ 5×. Confidence scale(duration / threshold). Evidence: step_index, duration_ms,
threshold_ms, kind, ratio.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from detectors.events import LLM_RESPONDED, TOOL_RESPONDED
from tests.detectors.runs import RunBuilder, conf, index_of, replay

TYPE = "SLOW_STEP"


def slow_tool(latency_ms: float) -> tuple[RunBuilder, str]:
    # steps: 1 llm requesting search, 2 search
    b = RunBuilder().llm(tools=["search"]).tool("search", latency_ms=latency_ms)
    return b, b.last_call_id


def slow_llm(latency_ms: float) -> tuple[RunBuilder, str]:
    # steps: 1 retrieval, 2 llm
    b = RunBuilder().retrieval().llm(latency_ms=latency_ms)
    return b, b.last_call_id


def test_slow_tool_fires_on_its_answer_while_the_run_is_going() -> None:
    b, call = slow_tool(30000)
    events = b.llm().end().build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, TOOL_RESPONDED, call)
    assert hit.outcome is None
    assert hit.signal.severity == "MEDIUM"
    assert hit.signal.confidence == conf(0.9)  # scale(30000/15000) = 0.5 + (2 - 1) * 0.4 = 0.9
    assert hit.signal.step_index == 2
    assert hit.signal.mode == "live"
    assert hit.signal.evidence == {
        "step_index": 2,
        "duration_ms": 30000,
        "threshold_ms": 15000,
        "kind": "tool",
        "ratio": 2.0,
    }


def test_slow_llm_call() -> None:
    b, call = slow_llm(45000)
    events = b.build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, LLM_RESPONDED, call)
    assert hit.signal.severity == "MEDIUM"
    assert hit.signal.confidence == conf(0.7)  # scale(45000/30000) = 0.5 + (1.5 - 1) * 0.4 = 0.7
    assert hit.signal.step_index == 2
    assert hit.signal.evidence == {
        "step_index": 2,
        "duration_ms": 45000,
        "threshold_ms": 30000,
        "kind": "llm",
        "ratio": 1.5,
    }


def test_exactly_the_threshold_is_not_slow() -> None:
    b, _ = slow_tool(15000)
    assert replay(b.end().build()).of(TYPE) == []
    b, _ = slow_llm(30000)
    assert replay(b.end().build()).of(TYPE) == []


def test_just_over_the_threshold_is_slow() -> None:
    b, _ = slow_tool(15001)
    hit = replay(b.build()).hit(TYPE)
    assert hit.signal.severity == "MEDIUM"
    assert hit.signal.confidence == conf(0.5)  # scale(15001/15000) = 0.500027
    b, _ = slow_llm(30001)
    assert replay(b.build()).hit(TYPE).signal.evidence["kind"] == "llm"


@pytest.mark.parametrize(
    ("maker", "latency_ms", "severity", "confidence"),
    [
        (slow_tool, 74999, "MEDIUM", 1.0),  # 4.9999×: scale = 0.5 + 3.9999 * 0.4 = 2.1, clamped
        (slow_tool, 75000, "HIGH", 1.0),  # 5×
        (slow_llm, 149999, "MEDIUM", 1.0),
        (slow_llm, 150000, "HIGH", 1.0),  # 5×
        (slow_llm, 60000, "MEDIUM", 0.9),  # scale(2) = 0.9
    ],
)
def test_high_at_five_times(
    maker: Callable[[float], tuple[RunBuilder, str]], latency_ms: float, severity: str, confidence: float
) -> None:
    b, _ = maker(latency_ms)
    hit = replay(b.build()).hit(TYPE)
    assert hit.signal.severity == severity
    assert hit.signal.confidence == conf(confidence)


def test_thresholds_from_settings() -> None:
    b, _ = slow_tool(1500)
    assert replay(b.build()).of(TYPE) == []
    hit = replay(b.build(), {"slow_step": {"tool_ms": 1000}}).hit(TYPE)
    assert hit.signal.confidence == conf(0.7)  # scale(1500/1000) = 0.7
    assert hit.signal.evidence["threshold_ms"] == 1000
    assert hit.signal.evidence["ratio"] == pytest.approx(1.5)

    b, _ = slow_llm(12000)
    hit = replay(b.build(), {"slow_step": {"llm_ms": 2000}}).hit(TYPE)
    assert hit.signal.severity == "HIGH"  # 6×
    assert hit.signal.evidence["ratio"] == pytest.approx(6.0)
