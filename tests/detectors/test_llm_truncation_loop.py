"""LLM_TRUNCATION_LOOP (spec §3), live, on llm.responded.

≥ `llm_truncation_loop.threshold` (2) LLM responses with finish_reason `length` (normalised at
the receiver, so Anthropic `max_tokens` counts — ours). HIGH, confidence scale(n / threshold).
Evidence: truncation_count, total_llm_calls, first_truncation_step, last_truncation_step.
"""

from __future__ import annotations

import pytest

from detectors.events import LLM_RESPONDED
from receiver.content import normalise_finish_reason
from tests.detectors.runs import Replay, RunBuilder, conf, index_of, replay

TYPE = "LLM_TRUNCATION_LOOP"


def test_second_truncation_fires_while_the_run_is_going() -> None:
    # steps: 1 llm cut off, 2 llm requesting search, 3 search, 4 llm cut off
    b = RunBuilder().llm(finish="length", output_length=4000)
    b.llm(tools=["search"]).tool("search")
    b.llm(finish="length", output_length=4000)
    second = b.last_call_id
    events = b.llm().end().build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, LLM_RESPONDED, second)
    assert hit.outcome is None
    assert hit.signal.severity == "HIGH"
    assert hit.signal.confidence == conf(0.5)  # scale(2/2) = 0.5
    assert hit.signal.step_index == 4
    assert hit.signal.mode == "live"
    assert hit.signal.evidence == {
        "truncation_count": 2,
        "total_llm_calls": 3,
        "first_truncation_step": 1,
        "last_truncation_step": 4,
    }


def test_one_truncation_does_not_fire() -> None:
    events = RunBuilder().llm(finish="length", output_length=4000).llm().llm().end().build()
    assert replay(events).of(TYPE) == []


@pytest.mark.parametrize("raw", ["max_tokens", "MAX_TOKENS", "length"])
def test_provider_finish_reasons_normalised_to_length_count(raw: str) -> None:
    finish = normalise_finish_reason(raw)
    assert finish == "length"
    events = RunBuilder().llm(finish=finish).llm(finish=finish).build()
    assert replay(events).hit(TYPE).signal.evidence["truncation_count"] == 2


@pytest.mark.parametrize(
    ("truncations", "confidence"),
    [
        (3, 0.7),  # scale(3/2) = 0.5 + (1.5 - 1) * 0.4 = 0.7
        (4, 0.9),  # scale(4/2) = 0.5 + (2 - 1) * 0.4 = 0.9
        (5, 1.0),  # scale(5/2) = 0.5 + 1.5 * 0.4 = 1.1, clamped to 1.0
    ],
)
def test_confidence_past_the_threshold(truncations: int, confidence: float) -> None:
    # The count only goes past the threshold when the threshold drops mid-run: a hot reload
    # (pipeline.reconfigure) from a threshold of 10 back to the default of 2.
    b = RunBuilder()
    for _ in range(truncations - 1):
        b.llm(finish="length")
    r = Replay({"llm_truncation_loop": {"threshold": 10}})
    r.feed(b.build())
    assert r.of(TYPE) == []

    r.reconfigure(None)
    b.llm(finish="length")
    r.feed(b.events[-2:])

    hit = r.hit(TYPE)
    assert hit.event is not None and hit.event.call_id == b.last_call_id
    assert hit.signal.confidence == conf(confidence)
    assert hit.signal.step_index == truncations
    assert hit.signal.evidence == {
        "truncation_count": truncations,
        "total_llm_calls": truncations,
        "first_truncation_step": 1,
        "last_truncation_step": truncations,
    }


def test_threshold_from_settings() -> None:
    config = {"llm_truncation_loop": {"threshold": 3}}
    events = RunBuilder().llm(finish="length").llm(finish="length").end().build()
    assert replay(events, config).of(TYPE) == []

    b = RunBuilder().llm(finish="length").llm(finish="length").llm(finish="length")
    events = b.build()
    hit = replay(events, config).hit(TYPE)
    assert hit.index == index_of(events, LLM_RESPONDED, b.last_call_id)
    assert hit.signal.confidence == conf(0.5)  # scale(3/3)
    assert hit.signal.evidence["truncation_count"] == 3
