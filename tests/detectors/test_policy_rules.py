"""detectors.policy_rules on its own: the one policy checker the daemon's API and the in-process SDK share."""

from __future__ import annotations

from typing import Any

import pytest

from detectors.events import LLM_CALLED, LLM_RESPONDED, TOOL_CALLED, RunEvent
from detectors.policy_rules import Policy, PolicyError, PolicyRunState, due, observe, parse_policy
from detectors.prices import DEFAULT_MODEL_PRICES, cost_usd, price_of

# The three examples of the Dunetrace docs ("Local policies"), as the API takes them.
DOCS_EXAMPLES: list[dict[str, Any]] = [
    {
        "name": "cap tool calls",
        "condition": {"trigger": "tool_call_count", "operator": "gt", "value": 5},
        "action": {"type": "stop"},
    },
    {
        "name": "cost cap",
        "condition": {"trigger": "cost_usd", "operator": "gt", "value": 0.50},
        "action": {"type": "switch_model", "params": {"model": "gpt-4o-mini"}},
    },
    {
        "name": "loop fix",
        "condition": {"trigger": "signal", "operator": "eq", "value": "TOOL_LOOP"},
        "action": {
            "type": "inject_prompt",
            "params": {"prompt": "Stop repeating tool calls. Summarise what you know and answer directly."},
        },
    },
]


def test_the_docs_examples_are_policies() -> None:
    stop, switch, inject = (parse_policy(body, -1 - i) for i, body in enumerate(DOCS_EXAMPLES))
    assert stop == Policy(-1, "cap tool calls", "*", "tool_call_count", "gt", 5, "stop", {})
    assert (switch.action, switch.params, switch.value) == ("switch_model", {"model": "gpt-4o-mini"}, 0.5)
    assert (inject.trigger, inject.operator, inject.value, inject.id) == ("signal", "eq", "TOOL_LOOP", -3)
    assert inject.priority == 100 and inject.enabled is True


def test_the_body_id_is_ignored_and_as_dict_round_trips() -> None:
    policy = parse_policy({**DOCS_EXAMPLES[1], "id": 99, "agent_id": " a1 ", "priority": -5}, 7)
    assert (policy.id, policy.agent_id, policy.priority) == (7, "a1", -5)
    assert parse_policy(policy.as_dict(), 7) == policy


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({**DOCS_EXAMPLES[0], "enabled": "yes"}, "enabled"),
        ({**DOCS_EXAMPLES[0], "enabled": 1}, "enabled"),
        ({**DOCS_EXAMPLES[0], "priority": True}, "priority"),
        ({**DOCS_EXAMPLES[0], "priority": 2**31 + 1}, "priority"),
        ({**DOCS_EXAMPLES[0], "name": "x" * 257}, "name"),
        ({**DOCS_EXAMPLES[0], "name": 5}, "name"),
        ({**DOCS_EXAMPLES[0], "agent_id": ""}, "agent_id"),
        ({**DOCS_EXAMPLES[0], "condition": "tool_call_count > 5"}, "condition"),
        ({**DOCS_EXAMPLES[0], "condition": {"trigger": "tool_call_count", "operator": "gt"}}, "condition.value"),
        (
            {**DOCS_EXAMPLES[0], "condition": {"trigger": "tool_call_count", "operator": "gt", "value": "5"}},
            "condition.value",
        ),
        (
            {**DOCS_EXAMPLES[0], "condition": {"trigger": "signal", "operator": "gt", "value": "TOOL_LOOP"}},
            "condition.operator",
        ),
        ({**DOCS_EXAMPLES[0], "action": {"type": "stop", "params": [1]}}, "action.params"),
        ({**DOCS_EXAMPLES[0], "action": {"type": "stop", "params": {"x": float("nan")}}}, "action.params"),
        ({k: v for k, v in DOCS_EXAMPLES[0].items() if k != "action"}, "action"),
    ],
)
def test_what_is_wrong_is_named(body: Any, field: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(body, 1)
    assert caught.value.field == field
    assert str(caught.value).startswith(field + ": ") and len(str(caught.value)) > len(field) + 4


def event(kind: str, call_id: str, **payload: Any) -> RunEvent:
    return RunEvent("run-1", f"{call_id}:{kind}", kind, 0, call_id, payload)


def test_policies_fire_once_except_log_and_signal_is_seen() -> None:
    stop = parse_policy(DOCS_EXAMPLES[0], 1)
    loop_fix = parse_policy(DOCS_EXAMPLES[2], 2)
    log_all = parse_policy({**DOCS_EXAMPLES[0], "name": "log", "action": {"type": "log"}}, 3)
    state = PolicyRunState()
    fired: list[tuple[int, Any]] = []
    for i in range(8):
        observed = observe(state, event(TOOL_CALLED, f"t{i}", tool_name="lookup"), [], DEFAULT_MODEL_PRICES)
        fired += [(p.id, seen) for p, seen in due([stop, loop_fix, log_all], state, observed)]
    # tool calls 6, 7, 8 are > 5: stop once (at 6), log every time
    assert fired == [(1, 6), (3, 6), (3, 7), (3, 8)]
    observed = observe(state, event(TOOL_CALLED, "t9", tool_name="lookup"), ["TOOL_LOOP"], DEFAULT_MODEL_PRICES)
    assert [(p.id, seen) for p, seen in due([stop, loop_fix], state, observed)] == [(2, ["TOOL_LOOP"])]


def test_cost_uses_the_shared_price_table() -> None:
    assert price_of("gpt-4o-mini-2024-07-18", DEFAULT_MODEL_PRICES) == (0.15, 0.60)  # the longest prefix wins
    assert price_of("gpt-4o-2024-08-06", DEFAULT_MODEL_PRICES) == (2.50, 10.00)
    assert price_of("my-finetune", DEFAULT_MODEL_PRICES) == (0.0, 0.0)
    assert price_of("gpt-4o-mini", DEFAULT_MODEL_PRICES) == (0.15, 0.60)  # exactly a key: that key
    assert price_of("gpt-4", {"gpt-4": (30.0, 60.0), "gpt-4o": (2.5, 10.0)}) == (30.0, 60.0)
    assert cost_usd("gpt-4o", 1_000_000, 100_000, DEFAULT_MODEL_PRICES) == pytest.approx(2.50 + 1.00)
    state = PolicyRunState()
    observe(state, event(LLM_CALLED, "c1", model="gpt-4o", prompt_tokens=200_000), [], DEFAULT_MODEL_PRICES)
    observed = observe(state, event(LLM_RESPONDED, "c1", completion_tokens=10_000), [], DEFAULT_MODEL_PRICES)
    assert observed["cost_usd"] == pytest.approx(0.5 + 0.1)


def test_the_detectors_package_imports_itself_only_relatively() -> None:
    """The SDK's wheel carries detectors/ under another name (dunetrace._detectors): an absolute
    ``detectors`` import inside it would find nothing there (or, worse, a user's own package)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "detectors"
    absolute = re.compile(r"^\s*(from|import)\s+detectors\b", re.MULTILINE)
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if absolute.search(p.read_text())]
    assert offenders == []


def test_a_runs_policy_state_holds_collections_only_while_it_needs_them() -> None:
    """The sidecar keeps one state per open run: no set or map is made before it is used, and the
    map of unanswered LLM calls goes once they are all answered — the cost still uses its model."""
    state = PolicyRunState()
    assert (state._fired_types, state._fired_policies, state._pending_models) == (None, None, None)
    observe(state, event(TOOL_CALLED, "t1", tool_name="lookup"), [], DEFAULT_MODEL_PRICES)
    assert (state._fired_types, state._fired_policies, state._pending_models) == (None, None, None)
    observe(state, event(LLM_CALLED, "c1", model="gpt-4o", prompt_tokens=200_000), [], DEFAULT_MODEL_PRICES)
    observe(state, event(LLM_CALLED, "c2", model="gpt-4o-mini", prompt_tokens=100_000), [], DEFAULT_MODEL_PRICES)
    assert state._pending_models == {"c1": ("gpt-4o", 200_000), "c2": ("gpt-4o-mini", 100_000)}
    observed = observe(state, event(LLM_RESPONDED, "c1", completion_tokens=0), [], DEFAULT_MODEL_PRICES)
    assert observed["cost_usd"] == pytest.approx(0.5)
    assert state._pending_models == {"c2": ("gpt-4o-mini", 100_000)}
    observed = observe(state, event(LLM_RESPONDED, "c2", completion_tokens=0), [], DEFAULT_MODEL_PRICES)
    assert observed["cost_usd"] == pytest.approx(0.5 + 0.015)
    assert state._pending_models is None
    # The SDK writes the map directly (a call it tracks itself): made on first use, as before.
    state.pending_models["c3"] = ("gpt-4o", 1_000_000)
    observed = observe(state, event(LLM_RESPONDED, "c3", completion_tokens=0), [], DEFAULT_MODEL_PRICES)
    assert observed["cost_usd"] == pytest.approx(0.515 + 2.5)
    # A failure type that fires, and a policy that fires, make their sets (kept from then on).
    observed = observe(state, event(TOOL_CALLED, "t2", tool_name="lookup"), ["TOOL_LOOP"], DEFAULT_MODEL_PRICES)
    assert observed["signal"] == frozenset({"TOOL_LOOP"}) and state.fired_types is state.fired_types
    stop = parse_policy(DOCS_EXAMPLES[0], 1)  # tool calls > 5
    for i in range(3, 7):
        fired = list(due([stop], state, observe(state, event(TOOL_CALLED, f"t{i}"), [], DEFAULT_MODEL_PRICES)))
    assert [p.id for p, _ in fired] == [1] and state.fired_policies == {1}
    assert list(due([stop], state, observe(state, event(TOOL_CALLED, "t7"), [], DEFAULT_MODEL_PRICES))) == []
