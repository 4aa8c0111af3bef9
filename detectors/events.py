"""Run events: what the receiver produces from spans and what detectors and the store consume.

A payload carries names, numbers and hashes only (see ../shared/spec/detectors.md §2); raw
content never gets this far.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RUN_STARTED = "run.started"
RUN_COMPLETED = "run.completed"
RUN_ERRORED = "run.errored"
LLM_CALLED = "llm.called"
LLM_RESPONDED = "llm.responded"
TOOL_CALLED = "tool.called"
TOOL_RESPONDED = "tool.responded"
RETRIEVAL_CALLED = "retrieval.called"
RETRIEVAL_RESPONDED = "retrieval.responded"
# Content that reached us as OTLP log records after the LLM span it belongs to.
LLM_CONTENT = "llm.content"
# Names a tool call that was counted before its name was known (content arriving late).
TOOL_CONTENT = "tool.content"
# An operator policy matched (recorded by the daemon, or reported by the Dunetrace SDK).
POLICY_TRIGGERED = "policy.triggered"
# A signal the application reported through the Dunetrace SDK (run.external_signal()).
EXTERNAL_SIGNAL = "external.signal"

# A response's finish reason as the detectors compare it, whatever the provider wrote (spec §1):
# one map for the receiver and the in-process SDK.
_FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "length": "length",
    "max_tokens": "length",
    "tool_calls": "tool_calls",
    "tool_call": "tool_calls",
    "tool_use": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "safety": "content_filter",
}


def normalise_finish_reason(raw: str | None) -> str | None:
    """stop|end_turn → stop, length|max_tokens → length, tool_* → tool_calls, … (spec §1)."""
    if not raw:
        return None
    lowered = raw.lower()
    return _FINISH_REASONS.get(lowered, lowered)


CALLED_KINDS = frozenset({LLM_CALLED, TOOL_CALLED, RETRIEVAL_CALLED})
RESPONDED_KINDS = frozenset({LLM_RESPONDED, TOOL_RESPONDED, RETRIEVAL_RESPONDED})
TERMINAL_KINDS = frozenset({RUN_COMPLETED, RUN_ERRORED})
EVENT_KINDS = frozenset({RUN_STARTED, *CALLED_KINDS, *RESPONDED_KINDS, *TERMINAL_KINDS, LLM_CONTENT, TOOL_CONTENT})

# Order of kinds that share a timestamp: the run starts first, a call before its answer,
# the run ends last.
_KIND_RANK = {
    RUN_STARTED: 0,
    LLM_CALLED: 1,
    TOOL_CALLED: 1,
    RETRIEVAL_CALLED: 1,
    LLM_RESPONDED: 2,
    TOOL_RESPONDED: 2,
    RETRIEVAL_RESPONDED: 2,
    LLM_CONTENT: 3,
    TOOL_CONTENT: 3,
    POLICY_TRIGGERED: 4,
    EXTERNAL_SIGNAL: 4,
    RUN_COMPLETED: 9,
    RUN_ERRORED: 9,
}


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One event of one run.

    ``event_id`` is derived from the span (and kind) it came from, so the same span
    delivered twice yields the same id. ``call_id`` ties a ``*.responded`` to its
    ``*.called``. ``ts_ns`` is the span time the event happened at.
    """

    run_id: str
    event_id: str
    kind: str
    ts_ns: int
    call_id: str
    payload: Mapping[str, Any]

    def sort_key(self) -> tuple[int, int, str]:
        """Time, then calls before answers, then the id: one order however the store returns them."""
        return (self.ts_ns, _KIND_RANK.get(self.kind, 5), self.event_id)


@dataclass(frozen=True, slots=True)
class RunRow:
    """The run summary the store keeps (one row per run, replaced as the run advances)."""

    run_id: str
    agent_id: str
    service_name: str | None
    status: str
    started_ns: int
    ended_ns: int | None
    last_event_ns: int
    step_count: int
    llm_calls: int
    tool_calls: int
    retrievals: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    exit_reason: str | None
    source: str = "otlp"  # "otlp" (spans, log records) or "sdk" (the Dunetrace SDK's POST /v1/ingest)


def number_steps(events: list[RunEvent]) -> list[tuple[int, RunEvent]]:
    """Order a run's events by time and give each its step (spec §1 "Steps").

    run.started is step 0; each ``*.called`` opens a new step; its ``*.responded`` shares
    it; every other event carries the step reached so far.
    """
    ordered = sorted(events, key=RunEvent.sort_key)
    step = 0
    step_of_call: dict[str, int] = {}
    numbered: list[tuple[int, RunEvent]] = []
    for event in ordered:
        if event.kind in CALLED_KINDS:
            step += 1
            step_of_call[event.call_id] = step
            numbered.append((step, event))
        elif event.kind in RESPONDED_KINDS:
            numbered.append((step_of_call.get(event.call_id, step), event))
        elif event.kind == RUN_STARTED:
            numbered.append((0, event))
        else:
            numbered.append((step, event))
    return numbered


# Fields an llm.content amendment fills in on the call's own events.
_CALLED_CONTENT = ("prompt_hash", "prompt_length", "injection")
_RESPONDED_CONTENT = ("output_hash", "output_length", "finish_reason", "tool_calls_requested", "tool_requests")
# Fields a tool.content amendment fills in on its tool.called.
_TOOL_CONTENT = ("tool_name", "args_hash", "args_length", "tool_call_id")


def fold_content(events: list[RunEvent]) -> list[RunEvent]:
    """Merge each ``llm.content`` amendment into the ``llm.called`` / ``llm.responded`` of the
    call it names, filling what those lack; amendments for spans that are no LLM call stay.

    Content can reach us after its call (OTLP log records, or the richer of two spans of one
    call); the stored events stay append-only and readers see one event per fact.
    """
    amendments: dict[str, dict[str, Any]] = {}
    calls = {e.call_id for e in events if e.kind in (LLM_RESPONDED, TOOL_CALLED)}
    for event in events:
        if event.kind in (LLM_CONTENT, TOOL_CONTENT) and event.call_id in calls:
            merged = amendments.setdefault(event.call_id, {})
            merged.update({k: v for k, v in event.payload.items() if v not in (None, [])})
    if not amendments:
        return events
    folded: list[RunEvent] = []
    for event in events:
        extra = amendments.get(event.call_id)
        if event.kind in (LLM_CONTENT, TOOL_CONTENT) and extra is not None:
            continue
        fields = {LLM_CALLED: _CALLED_CONTENT, TOOL_CALLED: _TOOL_CONTENT}.get(event.kind, _RESPONDED_CONTENT)
        if extra is not None and event.kind in (LLM_CALLED, LLM_RESPONDED, TOOL_CALLED):
            payload = dict(event.payload)
            for key in fields:
                if key in extra and payload.get(key) in (None, []):
                    payload[key] = extra[key]
            event = RunEvent(event.run_id, event.event_id, event.kind, event.ts_ns, event.call_id, payload)
        folded.append(event)
    return folded
