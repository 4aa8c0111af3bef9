"""Engine-level rules (spec §3 common rules, §4 signals) and the `detectors:` settings."""

from __future__ import annotations

import re
import uuid

import pytest

from detectors.base import signal_id_for
from detectors.events import LLM_CONTENT, RunEvent
from detectors.library.slow_step import SlowStepConfig
from detectors.library.tool_loop import ToolLoopConfig
from detectors.settings import DetectorSettings
from tests.detectors.runs import NOW_NS, Replay, RunBuilder, index_of, loop, replay

LOOP = "TOOL_LOOP"
STORM = "RETRY_STORM"
TRUNCATION = "LLM_TRUNCATION_LOOP"
EMPTY = "EMPTY_LLM_RESPONSE"


def identical_calls(n: int, run_id: str = "run-1", success: bool = True) -> list[RunEvent]:
    b = RunBuilder(run_id)
    for _ in range(n):
        loop(b, "search", args_hash="sha256:aa", success=success, error_type=None if success else "Timeout")
    return b.build()


# --- at most once per run and type; stable ids ---------------------------------------------


def test_a_type_fires_at_most_once_per_run() -> None:
    r = replay(identical_calls(8, success=False))
    assert len(r.of(LOOP)) == 1
    assert len(r.of(STORM)) == 1


def test_only_the_named_failure_types_are_asked() -> None:
    """The in-process SDK asks only the detectors its signal policies name."""
    from detectors.engine import DetectionEngine
    from detectors.run_view import RunView

    events = identical_calls(8, success=False)  # failing from the first step, looping, retrying
    engine = DetectionEngine()
    view = RunView("run-1", "agent")
    found = engine.process(view, events, now_ns=NOW_NS, end=False, failure_types=frozenset({STORM}))
    assert [s.failure_type for s in found] == [STORM]
    view = RunView("run-1", "agent")
    found = engine.process(view, events, now_ns=NOW_NS, end=False)
    assert sorted(s.failure_type for s in found) == ["FIRST_STEP_FAILURE", STORM, LOOP]


def test_redelivered_events_do_not_fire_again() -> None:
    events = identical_calls(3)
    r = replay(events)
    assert len(r.of(LOOP)) == 1
    again = r.feed(events)
    assert [s for s in again if s.failure_type == LOOP] == []
    assert len(r.of(LOOP)) == 1


def test_signal_id_is_stable_for_run_and_type() -> None:
    first = replay(identical_calls(3, run_id="b5ed23be-e4f0-43bc-8625-914223875508")).hit(LOOP).signal
    second = replay(identical_calls(3, run_id="b5ed23be-e4f0-43bc-8625-914223875508")).hit(LOOP).signal
    other_run = replay(identical_calls(3, run_id="0d1f6c52-5a4e-4c61-9d0e-2f1c3b4a5d6e")).hit(LOOP).signal

    assert first.signal_id == second.signal_id
    assert first.signal_id == signal_id_for("b5ed23be-e4f0-43bc-8625-914223875508", LOOP)
    assert uuid.UUID(first.signal_id).version == 5
    assert other_run.signal_id != first.signal_id
    assert signal_id_for("b5ed23be-e4f0-43bc-8625-914223875508", STORM) != first.signal_id


def test_signal_carries_run_agent_and_detection_time() -> None:
    signal = replay(identical_calls(3), agent_id="research-agent").hit(LOOP).signal
    assert signal.run_id == "run-1"
    assert signal.agent_id == "research-agent"
    assert signal.failure_type == LOOP
    assert signal.detected_ns == NOW_NS
    assert signal.mode == "live"
    assert signal.shadow is False


# --- enabled / shadow -------------------------------------------------------------------------


def test_disabled_live_detector_never_fires() -> None:
    r = replay(identical_calls(6, success=False), {"tool_loop": {"enabled": False}})
    assert r.of(LOOP) == []
    assert len(r.of(STORM)) == 1  # the others still run


def test_disabled_end_detector_never_fires() -> None:
    b = RunBuilder().llm(tools=["search"]).tool("search")
    for _ in range(4):
        b.llm(finish="length")
    r = replay(b.build(), {"goal_abandonment": {"enabled": False}})
    r.stall()
    assert r.of("GOAL_ABANDONMENT") == []

    r = replay(b.build())
    r.stall()
    assert len(r.of("GOAL_ABANDONMENT")) == 1


def test_shadow_flag_is_carried_on_the_signal() -> None:
    r = replay(identical_calls(3, success=False), {"tool_loop": {"shadow": True}})
    assert r.hit(LOOP).signal.shadow is True
    assert r.hit(STORM).signal.shadow is False


# --- per-agent overrides ----------------------------------------------------------------------


def test_agent_override_applies_to_that_agent_only() -> None:
    config = DetectorSettings.parse({"agents": {"research-agent": {"tool_loop": {"threshold": 5}}}})
    events = identical_calls(3)
    assert replay(events, config, agent_id="research-agent").of(LOOP) == []
    assert len(replay(events, config, agent_id="support-agent").of(LOOP)) == 1

    events = identical_calls(5)
    hit = replay(events, config, agent_id="research-agent").hit(LOOP)
    assert hit.signal.evidence["count"] == 5


def test_agent_override_is_merged_over_the_configured_defaults() -> None:
    config = DetectorSettings.parse(
        {
            "tool_loop": {"window": 4},
            "slow_step": {"shadow": True},
            "agents": {"research-agent": {"tool_loop": {"threshold": 5}}},
        }
    )
    research = config.for_agent("research-agent")
    assert research["TOOL_LOOP"] == ToolLoopConfig(threshold=5, window=4)
    assert research["SLOW_STEP"] == SlowStepConfig(shadow=True)
    other = config.for_agent("support-agent")
    assert other["TOOL_LOOP"] == ToolLoopConfig(threshold=3, window=4)
    assert other["SLOW_STEP"] == SlowStepConfig(shadow=True)


# --- settings errors name the key path ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"tool_lop": {"threshold": 3}}, "detectors.tool_lop"),  # unknown detector
        ({"tool_loop": {"treshold": 3}}, "detectors.tool_loop.treshold"),  # unknown field
        ({"tool_loop": {"threshold": "three"}}, "detectors.tool_loop.threshold"),  # wrong type
        ({"tool_loop": {"threshold": True}}, "detectors.tool_loop.threshold"),
        ({"tool_loop": {"threshold": 2.5}}, "detectors.tool_loop.threshold"),  # not a whole number
        ({"slow_step": {"enabled": "yes"}}, "detectors.slow_step.enabled"),
        ({"tool_loop": {"threshold": 1}}, "detectors.tool_loop.threshold"),  # below minimum
        ({"slow_step": {"tool_ms": 0}}, "detectors.slow_step.tool_ms"),
        ({"tool_loop": 3}, "detectors.tool_loop"),  # not a mapping
        ({"agents": {"research-agent": {"tool_lop": {}}}}, "detectors.agents.research-agent.tool_lop"),
        (
            {"agents": {"research-agent": {"tool_loop": {"threshold": 0}}}},
            "detectors.agents.research-agent.tool_loop.threshold",
        ),
        (
            {"agents": {"research-agent": {"retry_storm": {"bogus": 1}}}},
            "detectors.agents.research-agent.retry_storm.bogus",
        ),
    ],
)
def test_settings_errors_name_the_key_path(raw: dict[str, object], path: str) -> None:
    with pytest.raises(ValueError, match=rf"^{re.escape(path)}: "):
        DetectorSettings.parse(raw)


def test_whole_floats_accepted_for_whole_number_settings() -> None:
    config = DetectorSettings.parse({"tool_loop": {"threshold": 4.0}, "slow_step": {"tool_ms": 1000}})
    assert config.for_agent("any")["TOOL_LOOP"] == ToolLoopConfig(threshold=4)
    assert config.for_agent("any")["SLOW_STEP"] == SlowStepConfig(tool_ms=1000)


# --- llm.content amendments count once ------------------------------------------------------------


def test_truncation_amended_later_counts_once() -> None:
    b = RunBuilder().llm(finish=None, output_length=None)  # the span carried no content
    first = b.last_call_id
    b.content(first, finish="length", output_length=4000)
    b.content(first, finish="length", output_length=4000)  # the same call's content seen again
    r = replay(b.build())
    assert r.of(TRUNCATION) == []  # one truncated call, not two

    b.llm(finish="length")
    r.feed(b.events[-2:])
    hit = r.hit(TRUNCATION)
    assert hit.event is not None and hit.event.call_id == b.last_call_id
    assert hit.signal.evidence == {
        "truncation_count": 2,
        "total_llm_calls": 2,
        "first_truncation_step": 1,
        "last_truncation_step": 2,
    }


def test_truncation_in_the_span_and_in_the_amendment_counts_once() -> None:
    b = RunBuilder().llm(finish="length", output_length=4000)
    b.content(b.last_call_id, finish="length", output_length=4000)
    assert replay(b.build()).of(TRUNCATION) == []


def test_empty_answer_known_from_an_amendment_fires_on_it() -> None:
    b = RunBuilder().llm(finish="stop", output_length=None)  # text length arrives with the content
    call = b.last_call_id
    r = replay(b.build())
    assert r.of(EMPTY) == []

    events = b.content(call, output_length=0).build()
    r.feed(events[-1:])

    hit = r.hit(EMPTY)
    assert hit.index == index_of(events, LLM_CONTENT, call)
    assert hit.signal.step_index == 1
    assert hit.signal.evidence == {"occurrences": 1, "first_step": 1}


def test_empty_answer_amended_twice_counts_once() -> None:
    # With the detector off, the empty answer and two amendments of it go by; turned on by a hot
    # reload, it fires on the next answer and reports how many empty answers the run had.
    b = RunBuilder().llm(finish="stop", output_length=0)
    call = b.last_call_id
    b.content(call, finish="stop", output_length=0).content(call, finish="stop", output_length=0)
    r = Replay({"empty_llm_response": {"enabled": False}})
    r.feed(b.build())
    assert r.of(EMPTY) == []

    r.reconfigure(None)
    b.llm()
    r.feed(b.events[-2:])

    assert r.hit(EMPTY).signal.evidence == {"occurrences": 1, "first_step": 1}
