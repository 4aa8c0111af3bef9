"""TOOL_AVOIDANCE (spec §3), end.

Final answer, tools were available, zero tool calls, ≥ `tool_avoidance.min_llm_calls` (2) LLM
calls. MEDIUM, confidence 0.75. Evidence: available_tools, llm_calls. Evaluated when the run
completes, errors or stalls.
"""

from __future__ import annotations

from detectors.events import RUN_COMPLETED
from tests.detectors.runs import RunBuilder, conf, replay

TYPE = "TOOL_AVOIDANCE"
TOOLS = ["calculator", "search"]


def answered_without_tools(llm_calls: int = 2, tools: list[str] = TOOLS) -> RunBuilder:
    b = RunBuilder().start(tools=tools)
    for _ in range(llm_calls):
        b.llm()  # each ends with stop and text, requesting no tool
    return b


def test_fires_when_the_run_completes_with_a_final_answer() -> None:
    b = answered_without_tools()
    r = replay(b.build())
    assert r.of(TYPE) == []  # nothing before the run ends

    r.feed(b.end().events[-1:])
    assert b.events[-1].payload["exit_reason"] == "final_answer"

    hit = r.hit(TYPE)
    assert hit.event is not None and hit.event.kind == RUN_COMPLETED
    assert hit.signal.severity == "MEDIUM"
    assert hit.signal.confidence == conf(0.75)
    assert hit.signal.step_index == 2
    assert hit.signal.mode == "end"
    assert hit.signal.evidence == {"available_tools": ["calculator", "search"], "llm_calls": 2}


def test_one_llm_call_does_not_fire() -> None:
    assert replay(answered_without_tools(llm_calls=1).end().build()).of(TYPE) == []


def test_a_tool_call_does_not_fire() -> None:
    b = RunBuilder().start(tools=TOOLS).llm(tools=["search"]).tool("search").llm().llm()
    assert replay(b.end().build()).of(TYPE) == []


def test_no_tools_available_does_not_fire() -> None:
    assert replay(answered_without_tools(llm_calls=3, tools=[]).end().build()).of(TYPE) == []


def test_no_final_answer_does_not_fire() -> None:
    assert replay(answered_without_tools(llm_calls=3).end(final_answer=False).build()).of(TYPE) == []
    assert replay(answered_without_tools(llm_calls=3).errored().build()).of(TYPE) == []
    r = replay(answered_without_tools(llm_calls=3).build())
    assert [s for s in r.stall() if s.failure_type == TYPE] == []


def test_min_llm_calls_from_settings() -> None:
    config = {"tool_avoidance": {"min_llm_calls": 3}}
    assert replay(answered_without_tools(llm_calls=2).end().build(), config).of(TYPE) == []
    hit = replay(answered_without_tools(llm_calls=3).end().build(), config).hit(TYPE)
    assert hit.signal.evidence == {"available_tools": ["calculator", "search"], "llm_calls": 3}
    assert hit.signal.step_index == 3
