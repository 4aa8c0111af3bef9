"""RAG_EMPTY_RETRIEVAL: the agent answered after retrieving nothing useful."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import END, MEDIUM, Detector, DetectorConfig, Finding, register, setting
from ..events import RunEvent
from ..run_view import RunView


@dataclass(frozen=True, slots=True)
class RagEmptyRetrievalConfig(DetectorConfig):
    min_results: int = setting(1, "A retrieval returning fewer documents than this is empty.", 1)
    min_score: float = setting(0.3, "A retrieval whose best score is below this is empty.", 0.0)


@register
class RagEmptyRetrieval(Detector[RagEmptyRetrievalConfig]):
    failure_type = "RAG_EMPTY_RETRIEVAL"
    key = "rag_empty_retrieval"
    mode = END
    config_type = RagEmptyRetrievalConfig
    summary = (
        "The run gave a final answer after a retrieval that returned fewer than `min_results` documents or a "
        "top score below `min_score`."
    )

    def check(self, run: RunView, event: RunEvent, config: RagEmptyRetrievalConfig) -> Finding | None:
        if not run.final_answer:
            return None
        bad = [
            r
            for r in run.retrieval_log
            if (r.result_count is not None and r.result_count < config.min_results)
            or (r.top_score is not None and r.top_score < config.min_score)
        ]
        if not bad:
            return None
        first = bad[0]
        return Finding(
            severity=MEDIUM,
            confidence=0.88,
            step_index=run.step,
            evidence={
                "index_name": first.index_name,
                "result_count": first.result_count,
                "top_score": first.top_score,
                "bad_retrievals": len(bad),
            },
        )
