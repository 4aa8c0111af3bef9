"""CASCADING_TOOL_FAILURE (spec §3), live, on tool.responded.

The last ≥ `cascading_tool_failure.threshold` (3) tool calls all failed and span ≥ 2 distinct
tools. HIGH, confidence scale(n / threshold). Evidence: consecutive_failures, distinct_tools
(sorted), first_fail_step.

Each turn is an LLM call (odd step) then the tool call (even step): tool call k is step 2k.
"""

from __future__ import annotations

import pytest

from detectors.events import TOOL_RESPONDED
from tests.detectors.runs import RunBuilder, conf, index_of, loop, replay

TYPE = "CASCADING_TOOL_FAILURE"


def turns(outcomes: list[tuple[str, bool]]) -> tuple[RunBuilder, list[str]]:
    """(tool, succeeded) per turn."""
    b = RunBuilder()
    ids = [loop(b, name, success=ok, error_type=None if ok else "ConnectionError") for name, ok in outcomes]
    return b, ids


def test_three_failures_across_two_tools_fire_while_the_run_is_going() -> None:
    b, ids = turns([("search", False), ("fetch", False), ("search", False)])
    events = b.end().build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, TOOL_RESPONDED, ids[2])
    assert hit.outcome is None
    assert hit.signal.severity == "HIGH"
    assert hit.signal.confidence == conf(0.5)  # scale(3/3) = 0.5
    assert hit.signal.step_index == 6
    assert hit.signal.mode == "live"
    assert hit.signal.evidence == {
        "consecutive_failures": 3,
        "distinct_tools": ["fetch", "search"],  # sorted, not in order of appearance
        "first_fail_step": 2,
    }


@pytest.mark.parametrize(
    "outcomes",
    [
        [("search", False), ("fetch", False)],  # two failures
        [("search", False), ("search", False), ("search", False)],  # one tool only
        [("search", True), ("fetch", False), ("search", False)],  # the third-last succeeded
        [("search", False), ("fetch", False), ("lookup", True), ("search", False)],
    ],
)
def test_below_the_condition_does_not_fire(outcomes: list[tuple[str, bool]]) -> None:
    b, _ = turns(outcomes)
    assert replay(b.end().build()).of(TYPE) == []


@pytest.mark.parametrize(
    ("same_tool_failures", "confidence", "step_index"),
    [
        (3, 0.633, 8),  # 3 search + 1 fetch: scale(4/3) = 0.5 + (4/3 - 1) * 0.4 = 0.633
        (4, 0.767, 10),  # 4 search + 1 fetch: scale(5/3) = 0.5 + (5/3 - 1) * 0.4 = 0.767
    ],
)
def test_confidence_past_the_threshold(same_tool_failures: int, confidence: float, step_index: int) -> None:
    # a retry storm of one tool is no cascade until a second tool fails too
    b, ids = turns([("search", False)] * same_tool_failures + [("fetch", False)])
    events = b.build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, TOOL_RESPONDED, ids[-1])
    assert hit.signal.confidence == conf(confidence)
    assert hit.signal.step_index == step_index
    assert hit.signal.evidence == {
        "consecutive_failures": same_tool_failures + 1,
        "distinct_tools": ["fetch", "search"],
        "first_fail_step": 2,
    }


def test_first_fail_step_is_where_the_failing_run_starts() -> None:
    b, ids = turns([("search", False), ("search", True), ("fetch", False), ("search", False), ("fetch", False)])
    events = b.build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, TOOL_RESPONDED, ids[4])
    assert hit.signal.step_index == 10
    assert hit.signal.evidence == {
        "consecutive_failures": 3,
        "distinct_tools": ["fetch", "search"],
        "first_fail_step": 6,
    }


def test_threshold_from_settings() -> None:
    config = {"cascading_tool_failure": {"threshold": 4}}
    b, _ = turns([("search", False), ("fetch", False), ("search", False)])
    assert replay(b.end().build(), config).of(TYPE) == []

    b, ids = turns([("search", False), ("fetch", False), ("search", False), ("lookup", False)])
    events = b.build()
    hit = replay(events, config).hit(TYPE)
    assert hit.index == index_of(events, TOOL_RESPONDED, ids[3])
    assert hit.signal.confidence == conf(0.5)  # scale(4/4)
    assert hit.signal.evidence == {
        "consecutive_failures": 4,
        "distinct_tools": ["fetch", "lookup", "search"],
        "first_fail_step": 2,
    }
