"""REASONING_STALL (spec §3), live, on llm.called.

≥ `reasoning_stall.min_llm_calls` (5) LLM calls and llm_calls / max(tool_calls, 1) ≥
`reasoning_stall.ratio` (4.0). MEDIUM, confidence scale(ratio / threshold). Evidence: llm_calls,
tool_calls, ratio.
"""

from __future__ import annotations

from detectors.events import LLM_CALLED
from tests.detectors.runs import RunBuilder, conf, index_of, replay

TYPE = "REASONING_STALL"


def llm_calls(b: RunBuilder, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        b.llm()
        ids.append(b.last_call_id)
    return ids


def test_fifth_llm_call_without_tools_fires_while_the_run_is_going() -> None:
    b = RunBuilder()
    ids = llm_calls(b, 6)
    events = b.end().build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, LLM_CALLED, ids[4])
    assert hit.outcome is None
    assert hit.signal.severity == "MEDIUM"
    assert hit.signal.confidence == conf(0.6)  # ratio 5/1 = 5.0: scale(5/4) = 0.5 + 0.25 * 0.4 = 0.6
    assert hit.signal.step_index == 5
    assert hit.signal.mode == "live"
    assert hit.signal.evidence == {"llm_calls": 5, "tool_calls": 0, "ratio": 5.0}


def test_four_llm_calls_do_not_fire() -> None:
    b = RunBuilder()
    llm_calls(b, 4)
    assert replay(b.end().build()).of(TYPE) == []


def test_ratio_exactly_four_with_two_tool_calls() -> None:
    # steps: 1 llm, 2 search, 3 llm, 4 search, 5-10 llm: the 8th LLM call (step 10) makes 8/2 = 4.0
    b = RunBuilder().llm(tools=["search"]).tool("search").llm(tools=["search"]).tool("search")
    ids = llm_calls(b, 6)
    events = b.end().build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, LLM_CALLED, ids[5])  # 7/2 = 3.5 at step 9 did not
    assert hit.signal.confidence == conf(0.5)  # scale(4/4) = 0.5
    assert hit.signal.step_index == 10
    assert hit.signal.evidence == {"llm_calls": 8, "tool_calls": 2, "ratio": 4.0}


def test_seven_llm_calls_for_two_tools_do_not_fire() -> None:
    b = RunBuilder().llm(tools=["search"]).tool("search").llm(tools=["search"]).tool("search")
    llm_calls(b, 5)
    assert replay(b.end().build()).of(TYPE) == []


def test_one_tool_call_counts_like_none() -> None:
    b = RunBuilder().llm(tools=["search"]).tool("search")
    ids = llm_calls(b, 4)
    hit = replay(b.build()).hit(TYPE)
    assert hit.event is not None and hit.event.call_id == ids[3]
    assert hit.signal.step_index == 6
    assert hit.signal.evidence == {"llm_calls": 5, "tool_calls": 1, "ratio": 5.0}


def test_thresholds_from_settings() -> None:
    b = RunBuilder()
    ids = llm_calls(b, 7)
    hit = replay(b.build(), {"reasoning_stall": {"min_llm_calls": 7}}).hit(TYPE)
    assert hit.event is not None and hit.event.call_id == ids[6]
    assert hit.signal.confidence == conf(0.8)  # ratio 7.0: scale(7/4) = 0.5 + 0.75 * 0.4 = 0.8

    b = RunBuilder().llm(tools=["search"]).tool("search")
    ids = llm_calls(b, 5)
    hit = replay(b.build(), {"reasoning_stall": {"ratio": 6.0}}).hit(TYPE)
    assert hit.event is not None and hit.event.call_id == ids[4]  # 6/1 = 6.0; 5/1 did not
    assert hit.signal.confidence == conf(0.5)  # scale(6/6)
    assert hit.signal.evidence == {"llm_calls": 6, "tool_calls": 1, "ratio": 6.0}
