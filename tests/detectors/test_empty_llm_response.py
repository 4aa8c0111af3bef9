"""EMPTY_LLM_RESPONSE (spec §3), live, on llm.responded.

An LLM response with finish_reason `stop`, output_length exactly 0 and no tool call requested.
HIGH, confidence 0.95. Evidence: occurrences, first_step. No thresholds (only enabled/shadow).
"""

from __future__ import annotations

import pytest

from detectors.events import LLM_RESPONDED
from tests.detectors.runs import RunBuilder, conf, index_of, replay

TYPE = "EMPTY_LLM_RESPONSE"


def empty_third_step() -> tuple[RunBuilder, str]:
    # steps: 1 llm requesting search, 2 search, 3 llm with an empty answer
    b = RunBuilder().llm(tools=["search"]).tool("search").llm(finish="stop", output_length=0)
    return b, b.last_call_id


def test_empty_answer_fires_while_the_run_is_going() -> None:
    b, empty = empty_third_step()
    events = b.end().build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, LLM_RESPONDED, empty)
    assert hit.outcome is None
    assert hit.signal.severity == "HIGH"
    assert hit.signal.confidence == conf(0.95)
    assert hit.signal.step_index == 3
    assert hit.signal.mode == "live"
    assert hit.signal.evidence == {"occurrences": 1, "first_step": 3}


@pytest.mark.parametrize(
    ("finish", "output_length", "tools"),
    [
        ("stop", 1, []),  # one character of text
        ("stop", None, []),  # length unknown
        ("stop", 0, ["search"]),  # it requested a tool
        ("tool_calls", 0, ["search"]),
        ("length", 0, []),
        ("content_filter", 0, []),
    ],
)
def test_not_empty(finish: str, output_length: int | None, tools: list[str]) -> None:
    b = RunBuilder().llm(tools=["search"]).tool("search")
    b.llm(finish=finish, output_length=output_length, tools=tools)
    assert replay(b.end(final_answer=False).build()).of(TYPE) == []


def test_disabled_by_settings() -> None:
    b, _ = empty_third_step()
    assert replay(b.build(), {"empty_llm_response": {"enabled": False}}).of(TYPE) == []


def test_shadow_by_settings() -> None:
    b, _ = empty_third_step()
    assert replay(b.build(), {"empty_llm_response": {"shadow": True}}).hit(TYPE).signal.shadow is True
    assert replay(b.build()).hit(TYPE).signal.shadow is False


def test_has_no_threshold_setting() -> None:
    from detectors.settings import DetectorSettings

    with pytest.raises(ValueError, match=r"^detectors\.empty_llm_response\.threshold: unknown setting"):
        DetectorSettings.parse({"empty_llm_response": {"threshold": 2}})
