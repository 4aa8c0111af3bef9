"""RAG_EMPTY_RETRIEVAL (spec §3), end.

Final answer after a retrieval that returned < `rag_empty_retrieval.min_results` (1) results or a
top score < `rag_empty_retrieval.min_score` (0.3). MEDIUM, confidence 0.88. Evidence: index_name,
result_count, top_score, bad_retrievals.
"""

from __future__ import annotations

import pytest

from detectors.events import RUN_COMPLETED
from tests.detectors.runs import RunBuilder, conf, replay

TYPE = "RAG_EMPTY_RETRIEVAL"


def answered_after(*retrievals: tuple[int | None, float | None]) -> RunBuilder:
    """(result_count, top_score) per retrieval, then an LLM answer."""
    b = RunBuilder().start()
    for count, score in retrievals:
        b.retrieval(result_count=count, top_score=score, index_name="kb")
    return b.llm()


def test_fires_when_the_run_completes_with_a_final_answer() -> None:
    b = answered_after((0, None))
    r = replay(b.build())
    assert r.of(TYPE) == []  # nothing before the run ends

    r.feed(b.end().events[-1:])

    hit = r.hit(TYPE)
    assert hit.event is not None and hit.event.kind == RUN_COMPLETED
    assert hit.signal.severity == "MEDIUM"
    assert hit.signal.confidence == conf(0.88)
    assert hit.signal.step_index == 2
    assert hit.signal.mode == "end"
    assert hit.signal.evidence == {"index_name": "kb", "result_count": 0, "top_score": None, "bad_retrievals": 1}


@pytest.mark.parametrize(
    ("count", "score", "fires"),
    [
        (0, None, True),
        (1, None, False),  # one result is enough
        (1, 0.29, True),  # score under 0.3
        (1, 0.3, False),  # exactly the minimum score
        (5, 0.9, False),
    ],
)
def test_boundaries(count: int, score: float | None, fires: bool) -> None:
    signals = replay(answered_after((count, score)).end().build()).of(TYPE)
    assert len(signals) == (1 if fires else 0)
    if fires:
        assert signals[0].evidence == {
            "index_name": "kb",
            "result_count": count,
            "top_score": score,
            "bad_retrievals": 1,
        }


def test_counts_every_bad_retrieval_and_names_the_first() -> None:
    b = RunBuilder().start()
    b.retrieval(result_count=4, top_score=0.8, index_name="faq")
    b.retrieval(result_count=2, top_score=0.1, index_name="manuals")
    b.retrieval(result_count=0, top_score=None, index_name="tickets")
    hit = replay(b.llm().end().build()).hit(TYPE)
    assert hit.signal.step_index == 4
    assert hit.signal.evidence == {
        "index_name": "manuals",
        "result_count": 2,
        "top_score": 0.1,
        "bad_retrievals": 2,
    }


def test_no_final_answer_does_not_fire() -> None:
    assert replay(answered_after((0, None)).end(final_answer=False).build()).of(TYPE) == []
    assert replay(answered_after((0, None)).errored().build()).of(TYPE) == []
    r = replay(answered_after((0, None)).build())
    assert [s for s in r.stall() if s.failure_type == TYPE] == []


def test_thresholds_from_settings() -> None:
    events = answered_after((2, 0.9)).end().build()
    assert replay(events).of(TYPE) == []
    hit = replay(events, {"rag_empty_retrieval": {"min_results": 3}}).hit(TYPE)
    assert hit.signal.evidence["result_count"] == 2

    events = answered_after((3, 0.4)).end().build()
    assert replay(events).of(TYPE) == []
    hit = replay(events, {"rag_empty_retrieval": {"min_score": 0.5}}).hit(TYPE)
    assert hit.signal.evidence["top_score"] == 0.4
