"""FIRST_STEP_FAILURE (spec §3), live, on run.errored / llm.responded / tool.responded.

Within the first `first_step_failure.max_step` (2) steps: the run errored (0.90), or an LLM
response was empty (0.88), or a tool call failed (0.85); the first trigger wins. MEDIUM.
Evidence: trigger (`run_errored` / `empty_llm_response` / `tool_failure`), failed_step, tool?.
"""

from __future__ import annotations

from detectors.events import LLM_RESPONDED, RUN_ERRORED, TOOL_RESPONDED
from tests.detectors.runs import RunBuilder, conf, index_of, replay

TYPE = "FIRST_STEP_FAILURE"


def test_tool_failure_at_step_two_fires_while_the_run_is_going() -> None:
    b = RunBuilder().llm(tools=["search"]).tool("search", success=False, error_type="AuthError")
    failed = b.last_call_id
    events = b.llm().end().build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, TOOL_RESPONDED, failed)
    assert hit.outcome is None
    assert hit.signal.severity == "MEDIUM"
    assert hit.signal.confidence == conf(0.85)
    assert hit.signal.step_index == 2
    assert hit.signal.mode == "live"
    assert hit.signal.evidence == {"trigger": "tool_failure", "failed_step": 2, "tool": "search"}


def test_tool_failure_at_step_three_does_not_fire() -> None:
    b = RunBuilder().llm().llm(tools=["search"]).tool("search", success=False, error_type="AuthError")
    assert replay(b.llm().end().build()).of(TYPE) == []


def test_empty_llm_response_at_step_one() -> None:
    b = RunBuilder().llm(finish="stop", output_length=0)
    events = b.end().build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, LLM_RESPONDED, b.last_call_id)
    assert hit.signal.severity == "MEDIUM"
    assert hit.signal.confidence == conf(0.88)
    assert hit.signal.step_index == 1
    assert hit.signal.evidence == {"trigger": "empty_llm_response", "failed_step": 1}


def test_empty_llm_response_at_step_two_fires_and_at_step_three_does_not() -> None:
    b = RunBuilder().retrieval().llm(finish="stop", output_length=0)
    hit = replay(b.build()).hit(TYPE)
    assert hit.signal.evidence == {"trigger": "empty_llm_response", "failed_step": 2}

    b = RunBuilder().llm(tools=["search"]).tool("search").llm(finish="stop", output_length=0)
    assert replay(b.end().build()).of(TYPE) == []


def test_run_errored_within_two_steps() -> None:
    b = RunBuilder().start().llm(tools=["search"]).tool("search").errored()
    events = b.build()

    hit = replay(events).hit(TYPE)

    assert hit.index == len(events) - 1
    assert hit.event is not None and hit.event.kind == RUN_ERRORED
    assert hit.signal.severity == "MEDIUM"
    assert hit.signal.confidence == conf(0.90)
    assert hit.signal.step_index == 2
    assert hit.signal.evidence == {"trigger": "run_errored", "failed_step": 2}


def test_run_errored_before_any_call() -> None:
    hit = replay(RunBuilder().start().errored().build()).hit(TYPE)
    assert hit.signal.evidence == {"trigger": "run_errored", "failed_step": 0}


def test_run_errored_after_three_steps_does_not_fire() -> None:
    events = RunBuilder().start().llm(tools=["search"]).tool("search").llm().errored().build()
    assert replay(events).of(TYPE) == []


def test_first_trigger_wins() -> None:
    b = RunBuilder().start().llm(tools=["search"]).tool("search", success=False, error_type="AuthError")
    events = b.errored().build()

    r = replay(events)

    assert len(r.of(TYPE)) == 1
    assert r.hit(TYPE).signal.evidence == {"trigger": "tool_failure", "failed_step": 2, "tool": "search"}


def test_max_step_from_settings() -> None:
    config = {"first_step_failure": {"max_step": 3}}
    b = RunBuilder().llm().llm(tools=["search"]).tool("search", success=False, error_type="AuthError")
    events = b.build()
    hit = replay(events, config).hit(TYPE)
    assert hit.index == index_of(events, TOOL_RESPONDED, b.last_call_id)
    assert hit.signal.evidence == {"trigger": "tool_failure", "failed_step": 3, "tool": "search"}

    b = RunBuilder().llm(tools=["search"]).tool("search", success=False, error_type="AuthError")
    assert replay(b.build(), {"first_step_failure": {"max_step": 1}}).of(TYPE) == []
