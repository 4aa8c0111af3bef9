"""CONTEXT_BLOAT (spec §3), live, on llm.called.

≥ `context_bloat.min_calls` (3) LLM calls with prompt tokens; the first ≥ 10; the last ≥
`context_bloat.min_last_tokens` (2000); last / first ≥ `context_bloat.growth_factor` (3.0).
MEDIUM, confidence scale(growth / factor). Evidence: first_tokens, last_tokens, growth_factor,
llm_call_count, token_growth_sequence.

Each turn is an LLM call then a tool call: the k-th LLM call is step 2k - 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from detectors.events import LLM_CALLED
from tests.detectors.runs import RunBuilder, conf, index_of, replay

TYPE = "CONTEXT_BLOAT"


def turns(tokens: Sequence[int | None]) -> tuple[RunBuilder, list[str]]:
    b = RunBuilder()
    ids = []
    for count in tokens:
        b.llm(tools=["search"], prompt_tokens=count)
        ids.append(b.last_call_id)
        b.tool("search")
    return b, ids


def test_growth_fires_on_the_call_that_shows_it() -> None:
    b, ids = turns([500, 1000, 2000])
    events = b.llm(prompt_tokens=2100).end().build()

    hit = replay(events).hit(TYPE)

    assert hit.index == index_of(events, LLM_CALLED, ids[2])  # before its answer, mid-run
    assert hit.outcome is None
    assert hit.signal.severity == "MEDIUM"
    assert hit.signal.confidence == conf(0.633)  # scale(4.0/3.0) = 0.5 + (4/3 - 1) * 0.4 = 0.633
    assert hit.signal.step_index == 5
    assert hit.signal.mode == "live"
    assert hit.signal.evidence == {
        "first_tokens": 500,
        "last_tokens": 2000,
        "growth_factor": 4.0,
        "llm_call_count": 3,
        "token_growth_sequence": [500, 1000, 2000],
    }


@pytest.mark.parametrize(
    ("tokens", "growth", "confidence"),
    [
        ([700, 1400, 2100], 3.0, 0.5),  # exactly the factor: scale(3/3) = 0.5
        ([600, 1000, 2000], 3.333, 0.544),  # scale(3.333/3) = 0.5 + (1.111 - 1) * 0.4 = 0.544
        ([400, 1000, 2000], 5.0, 0.767),  # scale(5/3) = 0.5 + (5/3 - 1) * 0.4 = 0.767
        ([10, 100, 2000], 200.0, 1.0),  # scale(200/3) = 27.2, clamped to 1.0
    ],
)
def test_confidence_by_growth(tokens: list[int], growth: float, confidence: float) -> None:
    b, _ = turns(tokens)
    hit = replay(b.build()).hit(TYPE)
    assert hit.signal.confidence == conf(confidence)
    assert hit.signal.evidence["growth_factor"] == pytest.approx(growth, abs=1e-3)
    assert hit.signal.evidence["first_tokens"] == tokens[0]
    assert hit.signal.evidence["last_tokens"] == tokens[-1]


@pytest.mark.parametrize(
    "tokens",
    [
        [500, 2000],  # two calls
        [701, 1400, 2100],  # growth 2.996
        [600, 1000, 1999],  # last prompt under 2000
        [9, 100, 2000],  # first prompt under 10
        [500, None, 2000],  # only two calls report tokens
    ],
)
def test_below_the_condition_does_not_fire(tokens: list[int | None]) -> None:
    b, _ = turns(tokens)
    assert replay(b.end().build()).of(TYPE) == []


def test_calls_without_token_counts_are_not_counted() -> None:
    b, ids = turns([500, None, 1000, 2000])
    events = b.build()
    hit = replay(events).hit(TYPE)
    assert hit.index == index_of(events, LLM_CALLED, ids[3])
    assert hit.signal.step_index == 7
    assert hit.signal.evidence["llm_call_count"] == 3
    assert hit.signal.evidence["token_growth_sequence"] == [500, 1000, 2000]


def test_slow_growth_fires_when_the_latest_prompt_gets_there() -> None:
    b, ids = turns([500, 600, 700, 2000])
    events = b.build()
    hit = replay(events).hit(TYPE)
    assert hit.index == index_of(events, LLM_CALLED, ids[3])
    assert hit.signal.confidence == conf(0.633)  # scale(4/3)
    assert hit.signal.evidence == {
        "first_tokens": 500,
        "last_tokens": 2000,
        "growth_factor": 4.0,
        "llm_call_count": 4,
        "token_growth_sequence": [500, 600, 700, 2000],
    }


def test_thresholds_from_settings() -> None:
    b, _ = turns([500, 1000, 2000])
    assert replay(b.build(), {"context_bloat": {"growth_factor": 5.0}}).of(TYPE) == []
    assert replay(b.build(), {"context_bloat": {"min_calls": 4}}).of(TYPE) == []

    b, _ = turns([400, 1000, 2000])
    hit = replay(b.build(), {"context_bloat": {"growth_factor": 5.0}}).hit(TYPE)
    assert hit.signal.confidence == conf(0.5)  # scale(5/5)

    b, _ = turns([300, 600, 1000])
    assert replay(b.build()).of(TYPE) == []  # last prompt under the default 2000
    hit = replay(b.build(), {"context_bloat": {"min_last_tokens": 1000}}).hit(TYPE)
    assert hit.signal.evidence["growth_factor"] == pytest.approx(3.333, abs=1e-3)
