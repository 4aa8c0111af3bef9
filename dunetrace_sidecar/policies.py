"""Policies: operator rules evaluated on the incoming stream (../shared/spec/api.md, Policies).

A policy matches a run's observed value (tool calls, steps, cost, errors, finish reason, LLM
latency, or a failure type that fired) and records a ``policy.triggered`` event; ``stop`` also
raises a POLICY_VIOLATION signal so someone is alerted — only an in-process SDK can stop a run.
Each policy fires once per run, except ``log``, which fires on every match.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import replace as dataclass_replace
from typing import Any

from detectors.base import HIGH, Signal, signal_id_for
from detectors.events import POLICY_TRIGGERED, RunEvent
from detectors.policy_rules import Policy, PolicyRunState, due, observe, parse_policy

POLICY_VIOLATION = "POLICY_VIOLATION"


def _violation(run_id: str, agent_id: str, step: int, policy_event: Mapping[str, Any]) -> Signal:
    """The POLICY_VIOLATION signal of a stop, its evidence the policy event's."""
    keys = ("policy_id", "policy_name", "trigger", "operator", "value", "observed")
    return Signal(
        signal_id=signal_id_for(run_id, POLICY_VIOLATION),
        run_id=run_id,
        agent_id=agent_id,
        failure_type=POLICY_VIOLATION,
        severity=HIGH,
        confidence=1.0,
        step_index=step,
        evidence={k: policy_event.get(k) for k in keys},
        detected_ns=time.time_ns(),
        mode="live",
        shadow=False,
    )


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
        """After one event (and the signals it raised): the policies it triggers. A stop an
        in-process SDK reports (its own policy ended the run) raises POLICY_VIOLATION as the
        sidecar's own stops do, so it is alerted the same way."""
        observed = observe(state, event, (s.failure_type for s in new_signals), self.prices)
        p = event.payload
        if event.kind == POLICY_TRIGGERED and p.get("source") == "sdk" and p.get("action_type") == "stop":
            if POLICY_VIOLATION in state.fired_types:
                return [], []
            state.fired_types.add(POLICY_VIOLATION)
            return [], [_violation(run_id, agent_id, step, p)]
        policies = self.for_agent(agent_id)
        if not observed or not policies:
            return [], []
        events: list[RunEvent] = []
        signals: list[Signal] = []
        for policy, shown in due(policies, state, observed):
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
                signals.append(_violation(run_id, agent_id, step, payload))
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

    async def create(self, body: Any) -> Policy:
        """Raises PolicyError for a policy that cannot be."""
        async with self._lock:
            policy = parse_policy(body, self.book.next_id())
            await self._persist([policy], [])
            self.book.put(policy)
            return policy

    async def replace(self, policy_id: int, body: Any) -> Policy | None:
        async with self._lock:
            if self.book.get(policy_id) is None:
                return None
            policy = parse_policy(body, policy_id)
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
