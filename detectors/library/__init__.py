"""The 15 detectors of ../shared/spec/detectors.md §3, one per module.

Importing this package registers them all in ``detectors.base.REGISTRY``.
"""

from ..library import (
    cascading_tool_failure,
    context_bloat,
    empty_llm_response,
    first_step_failure,
    goal_abandonment,
    llm_truncation_loop,
    prompt_injection,
    rag_empty_retrieval,
    reasoning_stall,
    retry_storm,
    slow_step,
    step_count_inflation,
    tool_avoidance,
    tool_loop,
    tool_thrashing,
)

__all__ = [
    "cascading_tool_failure",
    "context_bloat",
    "empty_llm_response",
    "first_step_failure",
    "goal_abandonment",
    "llm_truncation_loop",
    "prompt_injection",
    "rag_empty_retrieval",
    "reasoning_stall",
    "retry_storm",
    "slow_step",
    "step_count_inflation",
    "tool_avoidance",
    "tool_loop",
    "tool_thrashing",
]
