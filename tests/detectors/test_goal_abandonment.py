"""GOAL_ABANDONMENT (spec §3), end.

The run stalled or ended without a final answer (ours: completed or errored too), it used ≥ 1
tool, and after its last tool call came ≥ `goal_abandonment.stall_steps` (4) LLM calls (ours:
LLM calls, not events). MEDIUM, confidence scale(llm_calls_since_tool / stall_steps). Evidence:
last_tool_used, last_tool_step, llm_calls_since_tool.
"""

from __future__ import annotations

import pytest

from detectors.events import RUN_COMPLETED, RUN_ERRORED
from tests.detectors.runs import RunBuilder, conf, replay

TYPE = "GOAL_ABANDONMENT"


def talks_after_tool(llm_calls: int) -> RunBuilder:
    # steps: 1 llm requesting search, 2 search, then llm_calls LLM calls (steps 3...)
    b = RunBuilder().start(tools=["search"]).llm(tools=["search"]).tool("search")
    for _ in range(llm_calls):
        b.llm(finish="length")  # never a final answer
    return b


def test_fires_when_a_stalled_run_is_closed() -> None:
    r = replay(talks_after_tool(4).build())
    assert r.of(TYPE) == []  # nothing while the run has not ended

    signals = r.stall()

    assert [s.failure_type for s in signals].count(TYPE) == 1
    hit = r.hit(TYPE)
    assert hit.index == -1  # produced by close_stalled
    assert hit.outcome == "stalled"
    assert hit.signal.severity == "MEDIUM"
    assert hit.signal.confidence == conf(0.5)  # scale(4/4) = 0.5
    assert hit.signal.step_index == 6
    assert hit.signal.mode == "end"
    assert hit.signal.evidence == {"last_tool_used": "search", "last_tool_step": 2, "llm_calls_since_tool": 4}


def test_three_llm_calls_after_the_tool_do_not_fire() -> None:
    # three LLM calls are six events: the anchor's event count would have fired
    r = replay(talks_after_tool(3).build())
    assert [s for s in r.stall() if s.failure_type == TYPE] == []
    assert r.of(TYPE) == []


@pytest.mark.parametrize(
    ("llm_calls", "confidence"),
    [
        (5, 0.6),  # scale(5/4) = 0.5 + 0.25 * 0.4 = 0.6
        (6, 0.7),  # scale(6/4) = 0.5 + 0.5 * 0.4 = 0.7
        (9, 1.0),  # scale(9/4) = 0.5 + 1.25 * 0.4 = 1.0
    ],
)
def test_confidence_past_the_threshold(llm_calls: int, confidence: float) -> None:
    r = replay(talks_after_tool(llm_calls).build())
    r.stall()
    hit = r.hit(TYPE)
    assert hit.signal.confidence == conf(confidence)
    assert hit.signal.step_index == 2 + llm_calls
    assert hit.signal.evidence["llm_calls_since_tool"] == llm_calls


def test_fires_when_the_run_completes_without_a_final_answer() -> None:
    b = talks_after_tool(4)
    r = replay(b.build())
    r.feed(b.end().events[-1:])
    assert b.events[-1].payload["exit_reason"] == "completed"

    hit = r.hit(TYPE)
    assert hit.event is not None and hit.event.kind == RUN_COMPLETED
    assert hit.signal.step_index == 6
    assert hit.signal.evidence == {"last_tool_used": "search", "last_tool_step": 2, "llm_calls_since_tool": 4}


def test_fires_when_the_run_errors() -> None:
    b = talks_after_tool(4).errored()
    hit = replay(b.build()).hit(TYPE)
    assert hit.event is not None and hit.event.kind == RUN_ERRORED
    assert hit.signal.evidence["llm_calls_since_tool"] == 4


def test_a_final_answer_does_not_fire() -> None:
    b = talks_after_tool(3).llm()  # the fourth LLM call answers (stop, text, no tool)
    assert replay(b.end().build()).of(TYPE) == []


def test_no_tool_used_does_not_fire() -> None:
    b = RunBuilder().start(tools=["search"])
    for _ in range(8):
        b.llm(finish="length")
    r = replay(b.build())
    assert [s for s in r.stall() if s.failure_type == TYPE] == []
    assert r.of(TYPE) == []


def test_counts_only_llm_calls_after_the_last_tool_call() -> None:
    # steps: 1-5 llm, 6 llm requesting search, 7 search, 8-10 llm
    b = RunBuilder()
    for _ in range(5):
        b.llm(finish="length")
    b.llm(tools=["search"]).tool("search")
    for _ in range(3):
        b.llm(finish="length")
    r = replay(b.build())
    assert [s for s in r.stall() if s.failure_type == TYPE] == []

    b.llm(finish="length")  # the fourth after the tool, step 11
    r = replay(b.build())
    r.stall()
    assert r.hit(TYPE).signal.evidence == {"last_tool_used": "search", "last_tool_step": 7, "llm_calls_since_tool": 4}


def test_stall_steps_from_settings() -> None:
    config = {"goal_abandonment": {"stall_steps": 2}}
    r = replay(talks_after_tool(2).build(), config)
    r.stall()
    hit = r.hit(TYPE)
    assert hit.signal.confidence == conf(0.5)  # scale(2/2)
    assert hit.signal.evidence["llm_calls_since_tool"] == 2

    r = replay(talks_after_tool(4).build(), {"goal_abandonment": {"stall_steps": 5}})
    assert [s for s in r.stall() if s.failure_type == TYPE] == []
