"""TOOL_THRASHING (spec §3), live, on tool.called.

The last `tool_thrashing.window` (6) tool calls alternate strictly between exactly two tools.
HIGH, confidence 0.90. Evidence: tool_a, tool_b (in order of first appearance), pattern.

Each turn is an LLM call (odd step) then the tool call (even step): tool call k is step 2k.
"""

from __future__ import annotations

from detectors.events import TOOL_CALLED
from tests.detectors.runs import RunBuilder, conf, index_of, loop, replay

TYPE = "TOOL_THRASHING"


def turns(names: list[str]) -> tuple[RunBuilder, list[str]]:
    b = RunBuilder()
    return b, [loop(b, name) for name in names]


def test_six_alternating_calls_fire_while_the_run_is_going() -> None:
    b, ids = turns(["search", "fetch"] * 3)
    events = b.end().build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, TOOL_CALLED, ids[5])
    assert hit.outcome is None
    assert hit.signal.severity == "HIGH"
    assert hit.signal.confidence == conf(0.90)
    assert hit.signal.step_index == 12
    assert hit.signal.mode == "live"
    assert hit.signal.evidence == {
        "tool_a": "search",
        "tool_b": "fetch",
        "pattern": ["search", "fetch", "search", "fetch", "search", "fetch"],
    }


def test_five_alternating_calls_do_not_fire() -> None:
    b, _ = turns(["search", "fetch", "search", "fetch", "search"])
    assert replay(b.end().build()).of(TYPE) == []


def test_a_broken_alternation_does_not_fire() -> None:
    b, _ = turns(["search", "fetch", "search", "fetch", "search", "search"])
    assert replay(b.end().build()).of(TYPE) == []
    b, _ = turns(["search", "fetch", "search", "lookup", "search", "fetch"])  # three tools
    assert replay(b.end().build()).of(TYPE) == []


def test_tools_named_in_order_of_first_appearance() -> None:
    b, _ = turns(["fetch", "search"] * 3)
    hit = replay(b.build()).hit(TYPE)
    assert hit.signal.evidence["tool_a"] == "fetch"
    assert hit.signal.evidence["tool_b"] == "search"


def test_only_the_last_calls_are_looked_at() -> None:
    b, ids = turns(["lookup", "search", "fetch", "search", "fetch", "search", "fetch"])
    events = b.build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, TOOL_CALLED, ids[6])
    assert hit.signal.step_index == 14
    assert hit.signal.evidence == {
        "tool_a": "search",
        "tool_b": "fetch",
        "pattern": ["search", "fetch", "search", "fetch", "search", "fetch"],
    }


def test_window_from_settings() -> None:
    config = {"tool_thrashing": {"window": 4}}
    b, _ = turns(["search", "fetch", "search"])
    assert replay(b.end().build(), config).of(TYPE) == []

    b, ids = turns(["search", "fetch", "search", "fetch"])
    events = b.build()
    hit = replay(events, config).hit(TYPE)
    assert hit.index == index_of(events, TOOL_CALLED, ids[3])
    assert hit.signal.step_index == 8
    assert hit.signal.evidence["pattern"] == ["search", "fetch", "search", "fetch"]
