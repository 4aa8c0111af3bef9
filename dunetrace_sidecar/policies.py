"""Policies: operator rules evaluated on the incoming stream (../shared/spec/api.md, Policies).

A policy matches a run's observed value (tool calls, steps, cost, errors, finish reason, LLM
latency, or a failure type that fired) and records a ``policy.triggered`` event; ``stop`` also
raises a POLICY_VIOLATION signal so someone is alerted — only an in-process SDK can stop a run.
Each policy fires once per run, except ``log``, which fires on every match.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from typing import Any

from pydantic import ValidationError

from detectors.base import HIGH, Signal, signal_id_for
from detectors.events import (
    CALLED_KINDS,
    LLM_CALLED,
    LLM_RESPONDED,
    POLICY_TRIGGERED,
    TOOL_CALLED,
    TOOL_RESPONDED,
    RunEvent,
)
from detectors.patterns import scan_injection
from dunetrace_sidecar.models import PolicyInput, first_error

POLICY_VIOLATION = "POLICY_VIOLATION"
NUMERIC_TRIGGERS = frozenset({"tool_call_count", "step_count", "cost_usd", "error_count", "llm_latency_ms"})
TEXT_TRIGGERS = frozenset({"finish_reason", "signal"})
NUMERIC_OPERATORS = frozenset({"gt", "gte", "lt", "lte", "eq", "neq"})
TEXT_OPERATORS = frozenset({"eq", "neq", "contains"})
DEFAULT_PRIORITY = 100

# USD per million tokens (input, output), by model-name prefix; the longest prefix wins.
# Override or extend with `model_prices:` in the config file. Unknown models cost 0.
DEFAULT_MODEL_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
}


class PolicyError(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True, slots=True)
class Policy:
    id: int
    name: str
    agent_id: str
    trigger: str
    operator: str
    value: Any
    action: str
    params: Mapping[str, Any]
    priority: int = DEFAULT_PRIORITY
    enabled: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "agent_id": self.agent_id,
            "condition": {"trigger": self.trigger, "operator": self.operator, "value": self.value},
            "action": {"type": self.action, "params": dict(self.params)},
            "priority": self.priority,
            "enabled": self.enabled,
        }


def parse_policy(body: Any, policy_id: int) -> Policy:
    """A policy as stored (or sent): its shape by the model, then its rules; errors name the field."""
    try:
        checked = PolicyInput.model_validate(body)
    except ValidationError as exc:
        field_name, message, _ = first_error(exc)
        raise PolicyError(field_name, message) from None
    return policy_from_input(checked, policy_id)


def policy_from_input(body: PolicyInput, policy_id: int) -> Policy:
    """The rules the model's shape cannot say: the operator and value fit the trigger, the
    action has what it needs, an injected prompt is no injection."""
    trigger, operator, value = body.condition.trigger, body.condition.operator, body.condition.value
    allowed = NUMERIC_OPERATORS if trigger in NUMERIC_TRIGGERS else TEXT_OPERATORS
    if operator not in allowed:
        raise PolicyError(
            "condition.operator", f"{operator!r} does not apply to {trigger}; one of {', '.join(sorted(allowed))}"
        )
    if trigger in NUMERIC_TRIGGERS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PolicyError("condition.value", f"{trigger} takes a finite number, got {value!r}")
    elif not isinstance(value, str) or not value:
        raise PolicyError("condition.value", f"{trigger} takes a non-empty string, got {value!r}")
    params = body.action.params or {}
    if not _json_safe(params):
        raise PolicyError("action.params", "numbers must be finite (NaN and Infinity are not JSON)")
    if body.action.type == "switch_model":
        model = params.get("model")
        if not isinstance(model, str) or not model.strip():
            raise PolicyError("action.params.model", "switch_model needs the model to switch to")
    if body.action.type == "inject_prompt":
        prompt = params.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise PolicyError("action.params.prompt", "inject_prompt needs the prompt to inject")
        found = scan_injection(prompt)
        if found is not None:
            raise PolicyError(
                "action.params.prompt", f"matches injection patterns ({', '.join(found.matched_patterns)})"
            )
    return Policy(
        id=policy_id,
        name=body.name.strip(),
        agent_id=body.agent_id.strip(),
        trigger=trigger,
        operator=operator,
        value=value,
        action=body.action.type,
        params=dict(params),
        priority=body.priority,
        enabled=body.enabled,
    )


def _json_safe(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(_json_safe(v) for v in value.values())
    if isinstance(value, list):
        return all(_json_safe(v) for v in value)
    return True


def matches(operator: str, observed: Any, value: Any, trigger: str) -> bool:
    if observed is None:
        return False
    if trigger == "signal":  # "eq" and "contains" both mean: this failure type has fired in the run
        fired = value in observed
        return not fired if operator == "neq" else fired
    if operator == "contains":
        return str(value).lower() in str(observed).lower()
    if operator == "eq":
        return bool(observed == value)
    if operator == "neq":
        return bool(observed != value)
    if not isinstance(observed, (int, float)):
        return False
    return {
        "gt": observed > value,
        "gte": observed >= value,
        "lt": observed < value,
        "lte": observed <= value,
    }[operator]


def price_of(model: str | None, prices: Mapping[str, tuple[float, float]]) -> tuple[float, float]:
    if not model:
        return (0.0, 0.0)
    best = ""
    for prefix in prices:
        if model.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return prices[best] if best else (0.0, 0.0)


@dataclass(slots=True)
class PolicyRunState:
    """What policies observe of one run, kept alongside its detectors' view."""

    tool_calls: int = 0
    steps: int = 0
    errors: int = 0
    cost_usd: float = 0.0
    fired_types: set[str] = field(default_factory=set)
    fired_policies: set[int] = field(default_factory=set)
    pending_models: dict[str, tuple[str | None, int]] = field(default_factory=dict)

    def observe(self, event: RunEvent, prices: Mapping[str, tuple[float, float]]) -> dict[str, Any]:
        """Fold the event in; the values this event changed (a log policy fires once per change)."""
        p = event.payload
        observed: dict[str, Any] = {}
        if event.kind in CALLED_KINDS:
            self.steps += 1
            observed["step_count"] = self.steps
        if event.kind == LLM_CALLED:
            self.pending_models[event.call_id] = (p.get("model"), int(p.get("prompt_tokens") or 0))
            if len(self.pending_models) > 64:
                self.pending_models.pop(next(iter(self.pending_models)))
        elif event.kind == TOOL_CALLED:
            self.tool_calls += 1
            observed["tool_call_count"] = self.tool_calls
        elif event.kind == TOOL_RESPONDED:
            if p.get("success") is False:
                self.errors += 1
                observed["error_count"] = self.errors
        elif event.kind == LLM_RESPONDED:
            model, prompt_tokens = self.pending_models.pop(event.call_id, (None, 0))
            price_in, price_out = price_of(model, prices)
            completion = int(p.get("completion_tokens") or 0)
            self.cost_usd += (prompt_tokens * price_in + completion * price_out) / 1_000_000
            observed["cost_usd"] = round(self.cost_usd, 6)
            observed["finish_reason"] = p.get("finish_reason")
            observed["llm_latency_ms"] = p.get("latency_ms")
            if p.get("error_type"):
                self.errors += 1
                observed["error_count"] = self.errors
        return observed


class PolicyBook:
    """The policies in force (loaded from the store at startup, changed through the API)."""

    def __init__(self, policies: list[Policy], prices: Mapping[str, tuple[float, float]]) -> None:
        self._policies = {p.id: p for p in policies}
        self.prices = dict(prices)
        self.highest_id = max(self._policies, default=0)  # ids are never reused, deleted ones included
        self._by_agent: dict[str, list[Policy]] = {}

    def all(self) -> list[Policy]:
        return sorted(self._policies.values(), key=lambda p: (p.priority, p.id))

    def get(self, policy_id: int) -> Policy | None:
        return self._policies.get(policy_id)

    def next_id(self) -> int:
        return self.highest_id + 1

    def put(self, policy: Policy) -> None:
        self._policies[policy.id] = policy
        self.highest_id = max(self.highest_id, policy.id)
        self._by_agent.clear()

    def remove(self, policy_id: int) -> None:
        self._policies.pop(policy_id, None)
        self._by_agent.clear()

    def for_agent(self, agent_id: str, enabled_only: bool = True) -> list[Policy]:
        if not enabled_only:
            return [p for p in self.all() if p.agent_id in (agent_id, "*")]
        cached = self._by_agent.get(agent_id)
        if cached is None:
            cached = self._by_agent[agent_id] = [p for p in self.all() if p.enabled and p.agent_id in (agent_id, "*")]
        return cached

    def evaluate(
        self,
        state: PolicyRunState,
        run_id: str,
        agent_id: str,
        event: RunEvent,
        step: int,
        new_signals: list[Signal],
    ) -> tuple[list[RunEvent], list[Signal]]:
        """After one event (and the signals it raised): the policies it triggers."""
        observed = state.observe(event, self.prices)
        state.fired_types.update(s.failure_type for s in new_signals)
        if new_signals:
            observed["signal"] = frozenset(state.fired_types)
        if not observed:
            return [], []
        events: list[RunEvent] = []
        signals: list[Signal] = []
        for policy in self.for_agent(agent_id):
            if policy.trigger not in observed:
                continue
            if policy.action != "log" and policy.id in state.fired_policies:
                continue
            value = observed[policy.trigger]
            if not matches(policy.operator, value, policy.value, policy.trigger):
                continue
            shown = sorted(value) if isinstance(value, frozenset) else value
            state.fired_policies.add(policy.id)
            event_id = f"policy:{policy.id}" if policy.action != "log" else f"policy:{policy.id}:{event.event_id}"
            payload = {
                "policy_id": policy.id,
                "policy_name": policy.name,
                "action_type": policy.action,
                "action_params": dict(policy.params),
                "trigger": policy.trigger,
                "operator": policy.operator,
                "value": policy.value,
                "observed": shown,
            }
            events.append(RunEvent(run_id, event_id, POLICY_TRIGGERED, event.ts_ns, event.call_id, payload))
            if policy.action == "stop" and POLICY_VIOLATION not in state.fired_types:
                state.fired_types.add(POLICY_VIOLATION)
                signals.append(
                    Signal(
                        signal_id=signal_id_for(run_id, POLICY_VIOLATION),
                        run_id=run_id,
                        agent_id=agent_id,
                        failure_type=POLICY_VIOLATION,
                        severity=HIGH,
                        confidence=1.0,
                        step_index=step,
                        evidence={
                            "policy_id": policy.id,
                            "policy_name": policy.name,
                            "trigger": policy.trigger,
                            "operator": policy.operator,
                            "value": policy.value,
                            "observed": shown,
                        },
                        detected_ns=time.time_ns(),
                        mode="live",
                        shadow=False,
                    )
                )
        return events, signals

    @staticmethod
    def restore(state: PolicyRunState, events: list[RunEvent], signals: list[Signal], prices: Any) -> None:
        """Rebuild a run's policy state from what the store holds (no policy fires again)."""
        for event in events:
            if event.kind == POLICY_TRIGGERED:
                state.fired_policies.add(int(event.payload.get("policy_id", 0)))
            else:
                state.observe(event, prices)
        state.fired_types.update(s.failure_type for s in signals)


class PolicyService:
    """CRUD for the API: validated, persisted through the store's writer, then put in force."""

    def __init__(self, book: PolicyBook, store: Any) -> None:
        self.book = book
        self._store = store
        self._lock = asyncio.Lock()

    def load(self) -> None:
        """Startup (executor thread): the stored policies into the book."""
        for body in self._store.load_policies():
            if body.get("deleted"):  # a tombstone keeps its id from being given out again
                self.book.highest_id = max(self.book.highest_id, int(body["id"]))
                continue
            self.book.put(parse_policy(body, int(body["id"])))

    async def _persist(self, put: list[Policy], deleted: list[int]) -> None:
        from store.duckdb_store import WriteBatch  # the store imports detectors; keep this module light

        rows = [(p.id, json.dumps(p.as_dict(), sort_keys=True)) for p in put]
        rows += [(policy_id, json.dumps({"id": policy_id, "deleted": True})) for policy_id in deleted]
        batch = WriteBatch(policies_put=rows)
        await asyncio.wrap_future(self._store.submit(batch))

    async def create(self, body: PolicyInput) -> Policy:
        async with self._lock:
            policy = policy_from_input(body, self.book.next_id())
            await self._persist([policy], [])
            self.book.put(policy)
            return policy

    async def replace(self, policy_id: int, body: PolicyInput) -> Policy | None:
        async with self._lock:
            if self.book.get(policy_id) is None:
                return None
            policy = policy_from_input(body, policy_id)
            await self._persist([policy], [])
            self.book.put(policy)
            return policy

    async def delete(self, policy_id: int) -> bool:
        async with self._lock:
            if self.book.get(policy_id) is None:
                return False
            await self._persist([], [policy_id])
            self.book.remove(policy_id)
            return True

    async def toggle(self, policy_id: int, enabled: bool | None) -> Policy | None:
        async with self._lock:
            current = self.book.get(policy_id)
            if current is None:
                return None
            policy = dataclass_replace(current, enabled=(not current.enabled) if enabled is None else enabled)
            await self._persist([policy], [])
            self.book.put(policy)
            return policy
