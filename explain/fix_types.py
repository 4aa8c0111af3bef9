"""Which fixes may be applied as a prompt edit — decided by the server from the failure type,
never by the model (../shared/spec/api.md, Explain)."""

from __future__ import annotations

PROMPT_ADDITION = "prompt_addition"
CODE_CHANGE = "code_change"
NO_AUTO_APPLY = "no_auto_apply"

_CODE_CHANGE_TYPES = frozenset(
    {
        "CONTEXT_BLOAT",
        "SLOW_STEP",
        "RAG_EMPTY_RETRIEVAL",
        "CASCADING_TOOL_FAILURE",
        "LLM_TRUNCATION_LOOP",
        "FIRST_STEP_FAILURE",
        "POLICY_VIOLATION",  # a policy stop is the operator's rule, not the agent's prompt
    }
)
_NEVER_APPLIED = frozenset({"PROMPT_INJECTION_SIGNAL"})


def fix_type_for(failure_type: str) -> str:
    if failure_type in _NEVER_APPLIED:
        return NO_AUTO_APPLY
    if failure_type in _CODE_CHANGE_TYPES:
        return CODE_CHANGE
    return PROMPT_ADDITION


def apply_blocked(failure_type: str) -> bool:
    return fix_type_for(failure_type) != PROMPT_ADDITION
