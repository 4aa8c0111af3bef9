"""Stage 2 of translation: a run's ``SpanFacts`` → ``RunEvent``s, incrementally.

One ``RunState`` per open run remembers just enough to turn spans arriving in any grouping
into the events of ../shared/spec/detectors.md §1–2, exactly once:

- duplicate deliveries of a span are dropped (span ids seen);
- one provider call is one LLM call (same response id, or the Anthropic SDK's own span
  inside or next to an instrumentation's span);
- a tool call an LLM requested becomes a tool call only when no tool span answers it
  (matched on tool-call id, else n-th request ↔ n-th span of that tool name);
- the root span starts and ends the run; a run that goes quiet without one is stalled.

The state can be rebuilt from stored events (``RunState.restore``) after a restart.

The sidecar holds one ``RunState`` per open run (tens of thousands): a map, set or list is
made only when the run first puts something in it, and names many runs repeat (agents, tools,
models) are interned, so a run pays for what it has, not for what some runs need.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from detectors import events as ev
from detectors.events import RunEvent, RunRow
from receiver.content import (
    Injection,
    OutputFeatures,
    PromptFeatures,
    ToolRequest,
    ToolResultSeen,
    normalise_finish_reason,
    response_finish_reason,
)
from receiver.sdk_ingest import SdkEvent
from receiver.spans import LogContent, SpanFacts, SpanRole

STATUS_RUNNING = "running"
STATUS_COMPLETED = "completed"
STATUS_ERRORED = "errored"
STATUS_STALLED = "stalled"
TERMINAL_STATUSES = frozenset({STATUS_COMPLETED, STATUS_ERRORED})
POLICY_VIOLATION = "policy_violation"
# What our SDK's root span may declare for a run that did not fail ("error" goes with an error status).
COMPLETED_EXIT_REASONS = frozenset({"final_answer", "completed", POLICY_VIOLATION})

SYNTHETIC_PREFIX = "req:"  # call ids of tool calls built from LLM requests
SDK_PREFIX = "sdk:"  # event ids of the Dunetrace SDK's events (POST /v1/ingest)
UNNAMED = "?"  # request index of a tool call known only from a finish reason
MAX_STASHED_LOG_CONTENT = 256  # per run: content for spans not seen yet
TWIN_SEARCH = 8  # sibling LLM spans searched for the other view of one provider call


@dataclass(slots=True)
class _LlmSpan:
    span_id: str
    parent_id: str
    start_ns: int
    end_ns: int
    native: bool
    finish_reason: str | None = None
    requests: int = 0  # how many tool calls its response asked for (registered in index order)
    unnamed: _Request | None = None  # the one a "tool_calls" finish reason stood for, none being visible


@dataclass(slots=True, eq=False)
class _Request:
    """A tool call an LLM response asked for; its time and place are the response's."""

    llm: _LlmSpan
    index: int | None  # among the response's requests; None: the unnamed one
    call_id: str | None
    name: str | None  # None: the response said "tool_calls" but its content was not sent (yet)
    args_hash: str | None
    args_length: int | None
    matched: bool = False  # a tool span answers it, or (unnamed) its content arrived in time
    emitted: bool = False  # turned into a tool call of its own
    named: bool = False  # (unnamed) the response's content arrived and named it

    @property
    def key(self) -> str:
        """``<llm span id>:<index>``, or ``<llm span id>:?`` for an unnamed one."""
        return f"{self.llm.span_id}:{UNNAMED if self.index is None else self.index}"

    @property
    def ts_ns(self) -> int:
        return self.llm.end_ns

    @property
    def parent_id(self) -> str:
        return self.llm.parent_id


@dataclass(slots=True)
class _ToolSpan:
    call_id: str | None
    matched: bool = False


@dataclass(slots=True)
class _SdkCalls:
    """What pairing the Dunetrace SDK's events needs (POST /v1/ingest): their ids seen, and the
    calls still open (LLM calls by the SDK's call index, in order; tool calls per tool name, in
    order). Made with a run's first SDK event: runs sent as spans have none."""

    seen: set[str] = field(default_factory=set)
    llm_open: list[str] = field(default_factory=list)
    llm_answered: set[str] = field(default_factory=set)
    llm_tokens: dict[str, tuple[int, bool]] = field(default_factory=dict)  # call → prompt tokens, exact?
    calls_open: dict[str, list[str]] = field(default_factory=dict)  # tool name / retrieval:<index> → calls


_V = TypeVar("_V")


def _interned(value: _V) -> _V:
    """A name many runs repeat (agent, tool, model, finish reason): one copy for all of them."""
    if type(value) is str:
        return sys.intern(value)  # type: ignore[call-overload]  # type() narrows no TypeVar; cast() costs a call
    return value


def _drop_none(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if value is not None}


def _injection(value: Injection | None) -> dict[str, Any] | None:
    return value.as_payload() if value else None


def _ms(start_ns: int, end_ns: int) -> float:
    return round(max(end_ns - start_ns, 0) / 1e6, 3)


@dataclass(slots=True)
class RunState:
    run_id: str
    default_agent_id: str
    agent_id: str | None = None
    # How strongly agent_id is known (AGENT_* below, lower is stronger) and, for names from
    # spans other than the root, the start of the span that gave it (the outermost wins).
    agent_rank: int = 99
    agent_start_ns: int = 0
    agent_settled: bool = False  # no later span can rename the run: alerts may go out
    service_name: str | None = None
    status: str = STATUS_RUNNING
    started_ns: int = 0
    ended_ns: int | None = None
    last_event_ns: int = 0
    exit_reason: str | None = None
    declared_exit: str | None = None  # the exit reason our SDK's root span declared (docs/sdk-spans.md)
    root_seen: bool = False
    steps: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    retrievals: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_model: str | None = None
    available_tools: dict[str, None] | None = None  # in the order first offered
    # (end_ns, finish_reason, requested tools) of the latest-ending LLM response
    last_llm: tuple[int, str | None, bool] | None = None
    # Every span seen (so a re-delivered one is dropped) → its LLM call, None for other spans;
    # the LLM calls in the order they were recorded (a call's entry moves to the end then).
    spans: dict[str, _LlmSpan | None] = field(default_factory=dict)
    call_by_response: dict[str, _LlmSpan] | None = None
    # LLM calls by parent span: made when the first native SDK span comes (only twins need it)
    llm_by_parent: dict[str, list[_LlmSpan]] | None = None
    has_native: bool = False
    # Tool-call pairing, O(1) per span: requests by call id (None once matched), and per tool
    # name the requests and tool spans not matched yet, in order (matched ones are dropped from
    # the head). Each is None until the run has one.
    requests_by_call_id: dict[str, _Request | None] | None = None
    open_requests: dict[str, list[_Request]] | None = None
    pending: list[_Request] | None = None  # requests no tool span answered yet (None: none)
    open_tool_spans: dict[str, list[_ToolSpan]] | None = None  # by tool name
    open_tool_spans_by_call_id: dict[str, _ToolSpan] | None = None
    open_tool_spans_any: list[_ToolSpan] | None = None  # for unnamed requests
    open_unnamed: list[_Request] | None = None
    replay_emitted: set[str] | None = None  # while restoring: request keys already emitted
    replay_calls: dict[str, tuple[str, int, bool]] | None = None  # restoring: call → parent, start, sdk
    log_stash: dict[str, LogContent] | None = None
    content_events: set[str] | None = None
    touched_at: float = field(default_factory=time.monotonic)
    source: str = "otlp"
    sdk: _SdkCalls | None = None  # the Dunetrace SDK's events (POST /v1/ingest), once one came

    # --- summary ---------------------------------------------------------------------

    def row(self) -> RunRow:
        return RunRow(
            run_id=self.run_id,
            agent_id=self.agent_id or self.default_agent_id,
            service_name=self.service_name,
            status=self.status,
            started_ns=self.started_ns,
            ended_ns=self.ended_ns,
            last_event_ns=self.last_event_ns,
            step_count=self.steps,
            llm_calls=self.llm_calls,
            tool_calls=self.tool_calls,
            retrievals=self.retrievals,
            errors=self.errors,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            exit_reason=self.exit_reason,
            source=self.source,
        )

    # --- ingest ----------------------------------------------------------------------

    def apply_spans(self, spans: Sequence[SpanFacts]) -> list[RunEvent]:
        """Events for spans not seen before; ``spans`` in start-time order gives the best pairing."""
        out: list[RunEvent] = []
        self.touched_at = time.monotonic()
        if self.status == STATUS_STALLED:
            self.status = STATUS_RUNNING  # it was only quiet
        fresh = []
        for span in spans:
            if span.span_id not in self.spans:
                self.spans[span.span_id] = None
                fresh.append(span)
                if span.from_our_sdk:
                    self.source = "sdk"  # an SDK opened it: a run from its start, steps or not
        roots = [span for span in fresh if span.is_root]
        if roots:  # run.started names the model and tools of the whole batch it arrives with
            for span in fresh:
                if span.llm is not None:
                    self.first_model = self.first_model or _interned(span.llm.model)
                    self._offer_tools(span.llm.tools_available)
        for root in roots:  # the root opens the run before its children and closes it after them
            self._identity(root)
            self._start(root, out)
        for span in fresh:
            if not span.is_root:
                self._identity(span)
                self._role(span, out)
        for root in roots:
            self._role(root, out)
            self._end(root, out)
        return out

    def _role(self, span: SpanFacts, out: list[RunEvent]) -> None:
        if span.role is SpanRole.LLM:
            self._llm(span, out)
        elif span.role is SpanRole.TOOL:
            self._tool(span, out)
        elif span.role is SpanRole.RETRIEVAL:
            self._retrieval(span, out)

    def apply_log_content(self, content: LogContent) -> list[RunEvent]:
        """Content sent as log records (events mode) for one span.

        Always recorded as an ``llm.content`` event, so acknowledged content survives a
        restart; merged into the LLM span's own events when the span arrives later, and its
        tool requests join the pairing when the span came first.
        """
        self.touched_at = time.monotonic()
        payload = _content_payload(content, source="otlp_logs")
        event_id = f"{content.span_id}:{ev.LLM_CONTENT}:{_content_digest(payload)}"
        if not self._new_content_event(event_id):
            return []
        llm = self.spans.get(content.span_id)
        ts_ns = llm.end_ns if llm is not None else content.ts_ns
        out = [self._event(event_id, ev.LLM_CONTENT, ts_ns, content.span_id, payload)]
        if llm is not None:
            if content.output is not None:
                self._apply_amendment(llm, payload.get("finish_reason"), content.output.tool_requests, out)
            if self.status != STATUS_RUNNING:
                self._flush_pending(None, out)  # the run is over: no later call will settle them
        elif content.span_id not in self.spans and len(self.log_stash or ()) < MAX_STASHED_LOG_CONTENT:
            self._stash(content)
        return out

    def _new_content_event(self, event_id: str) -> bool:
        """Record an ``llm.content`` event's id; False if it was recorded before."""
        if self.content_events is None:
            self.content_events = set()
        elif event_id in self.content_events:
            return False
        self.content_events.add(event_id)
        return True

    def _stash(self, content: LogContent) -> None:
        """Keep log content for an LLM span not seen yet."""
        if self.log_stash is None:
            self.log_stash = {}
        self.log_stash[content.span_id] = _merge_log_content(self.log_stash.get(content.span_id), content)

    def _unstash(self, span_id: str) -> LogContent | None:
        if self.log_stash is None:
            return None
        stashed = self.log_stash.pop(span_id, None)
        if not self.log_stash:
            self.log_stash = None
        return stashed

    def _offer_tools(self, names: Iterable[Any]) -> None:
        """Tools an LLM call (or the SDK's run start) was offered: the run's, in first-offered order."""
        if not names:  # most calls: a tuple or list, and empty
            return
        offered = dict.fromkeys(map(_interned, names))
        if not offered:
            return
        if self.available_tools is None:
            self.available_tools = offered
        else:
            self.available_tools.update(offered)

    # --- the Dunetrace SDK's events (POST /v1/ingest) -------------------------------------

    def apply_sdk(self, events: Sequence[SdkEvent]) -> list[RunEvent]:
        """Run events for SDK events not seen before (by ``event_id``: the SDK resends a batch's
        events under the same ids), in time order; the run's counts follow as for spans.

        Calls are paired as the SDK's own run builder pairs them: an LLM response with its
        call by the SDK's call index (else the latest open call), a tool or retrieval answer
        with the latest unanswered call of the same tool or index."""
        out: list[RunEvent] = []
        self.touched_at = time.monotonic()
        if self.status == STATUS_STALLED:
            self.status = STATUS_RUNNING  # it was only quiet
        self.source = "sdk"
        sdk = self._sdk()
        for event in sorted(events, key=lambda e: e.ts_ns):
            if event.event_id in sdk.seen:
                continue
            sdk.seen.add(event.event_id)
            if event.agent_id and self.agent_rank > AGENT_RESOURCE:  # every SDK event names its agent
                self.agent_id, self.agent_rank = _interned(event.agent_id), AGENT_RESOURCE
            self.agent_settled = True
            self._sdk_event(event, sdk, out)
        return out

    def _sdk(self) -> _SdkCalls:
        if self.sdk is None:
            self.sdk = _SdkCalls()
        return self.sdk

    def _sdk_event(self, event: SdkEvent, sdk: _SdkCalls, out: list[RunEvent]) -> None:
        p = dict(event.payload)
        event_id = SDK_PREFIX + event.event_id
        kind, ts_ns = event.kind, event.ts_ns
        call_id = event_id
        if kind == ev.RUN_STARTED:
            self.root_seen = True
            self.started_ns = ts_ns
            self.first_model = self.first_model or _interned(p.get("model"))
            self._offer_tools(p.get("tools", ()))
        elif kind == ev.LLM_CALLED:
            call_id = self._sdk_llm_call(p.pop("sdk_call", None)) or event_id
            counted, exact = sdk.llm_tokens.get(call_id, (0, False))
            if not exact:  # the response's exact count, when it came first, stands
                self.prompt_tokens += (p.get("prompt_tokens") or 0) - counted
                sdk.llm_tokens[call_id] = (p.get("prompt_tokens") or 0, False)
            if call_id not in sdk.llm_answered:
                sdk.llm_open.append(call_id)
            self.llm_calls += 1
            self.first_model = self.first_model or _interned(p.get("model"))
            p["call_id"] = call_id
            self.steps += 1
        elif kind == ev.LLM_RESPONDED:
            index = p.pop("sdk_call", None)
            call_id = self._sdk_llm_call(index) or (sdk.llm_open[-1] if sdk.llm_open else event_id)
            if call_id in sdk.llm_open:
                sdk.llm_open.remove(call_id)
            sdk.llm_answered.add(call_id)
            if p.get("prompt_tokens") is not None:
                counted, _ = sdk.llm_tokens.get(call_id, (0, False))
                self.prompt_tokens += p["prompt_tokens"] - counted
                sdk.llm_tokens[call_id] = (p["prompt_tokens"], True)
            self.completion_tokens += p.get("completion_tokens") or 0
            if p.get("error_type"):
                self.errors += 1
            finish = _interned(p.get("finish_reason"))
            if self.last_llm is None or ts_ns >= self.last_llm[0]:
                self.last_llm = (ts_ns, finish, finish == "tool_calls")
        elif kind in (ev.TOOL_CALLED, ev.RETRIEVAL_CALLED):
            name = p.get("tool_name") if kind == ev.TOOL_CALLED else f"retrieval:{p.get('index_name') or ''}"
            sdk.calls_open.setdefault(_interned(str(name)), []).append(call_id)
            p["call_id"] = call_id
            self.steps += 1
            if kind == ev.TOOL_CALLED:
                self.tool_calls += 1
            else:
                self.retrievals += 1
        elif kind in (ev.TOOL_RESPONDED, ev.RETRIEVAL_RESPONDED):
            name = p.get("tool_name") if kind == ev.TOOL_RESPONDED else f"retrieval:{p.get('index_name') or ''}"
            open_calls = sdk.calls_open.get(str(name))
            if not open_calls and kind == ev.RETRIEVAL_RESPONDED:  # LangChain's answers name no index
                open_calls = next((q for n, q in sdk.calls_open.items() if n.startswith("retrieval:") and q), None)
            if open_calls:
                call_id = open_calls.pop()
            if p.get("success") is False or (kind == ev.RETRIEVAL_RESPONDED and p.get("error_type")):
                self.errors += 1
        elif kind in (ev.RUN_COMPLETED, ev.RUN_ERRORED):
            self.ended_ns = ts_ns
            if kind == ev.RUN_COMPLETED:
                self.status, self.exit_reason = STATUS_COMPLETED, p.get("exit_reason") or "completed"
            else:
                self.status = STATUS_ERRORED
                self.exit_reason = "policy_violation" if p.get("exit_reason") == "policy_violation" else "error"
        out.append(self._event(event_id, kind, ts_ns, call_id, p))

    def _sdk_llm_call(self, index: int | None) -> str | None:
        """The call id of the SDK's LLM call ``index`` of this run: the same whichever of its
        events comes first, and after a restart (None: the SDK gave no index)."""
        return None if index is None else f"{self.run_id[:8]}:llm:{index}"

    def _replay_sdk(self, event: RunEvent) -> None:
        """Restoring: what later SDK events of the run need (ids seen, calls still open)."""
        self.source = "sdk"
        sdk = self._sdk()
        sdk.seen.add(event.event_id[len(SDK_PREFIX) :])
        p = event.payload
        if event.kind == ev.RUN_STARTED:
            self.root_seen = True
            self.agent_settled = True
            self._offer_tools(p.get("tools", ()))
        elif event.kind == ev.LLM_CALLED:
            if event.call_id not in sdk.llm_answered:
                sdk.llm_open.append(event.call_id)
            if not sdk.llm_tokens.get(event.call_id, (0, False))[1]:
                sdk.llm_tokens[event.call_id] = (p.get("prompt_tokens") or 0, False)
        elif event.kind == ev.LLM_RESPONDED:
            if event.call_id in sdk.llm_open:
                sdk.llm_open.remove(event.call_id)
            sdk.llm_answered.add(event.call_id)
            if p.get("prompt_tokens") is not None:
                sdk.llm_tokens[event.call_id] = (p["prompt_tokens"], True)
            if self.last_llm is None or event.ts_ns >= self.last_llm[0]:
                finish = _interned(p.get("finish_reason"))
                self.last_llm = (event.ts_ns, finish, finish == "tool_calls")
        elif event.kind in (ev.TOOL_CALLED, ev.RETRIEVAL_CALLED):
            name = p.get("tool_name") if event.kind == ev.TOOL_CALLED else f"retrieval:{p.get('index_name') or ''}"
            sdk.calls_open.setdefault(_interned(str(name)), []).append(event.call_id)
        elif event.kind in (ev.TOOL_RESPONDED, ev.RETRIEVAL_RESPONDED):
            for calls in sdk.calls_open.values():
                if event.call_id in calls:
                    calls.remove(event.call_id)

    def close_stalled(self) -> list[RunEvent]:
        """No root span came: pending tool requests become calls and the run is stalled."""
        out: list[RunEvent] = []
        self._flush_pending(None, out)
        if self.status not in TERMINAL_STATUSES:
            self.status = STATUS_STALLED
        return out

    # --- identity and run bounds -------------------------------------------------------

    def _identity(self, span: SpanFacts) -> None:
        """The agent a run belongs to, from the strongest name seen so far (README, "Agent ids")."""
        if span.service_name and not self.service_name:
            self.service_name = _interned(span.service_name)
        offered = _strongest_agent_name(span)  # a span's weaker names never beat its strongest
        if offered is not None:
            rank, name = offered
            outer = rank == AGENT_SPAN and rank == self.agent_rank and span.start_ns < self.agent_start_ns
            if rank < self.agent_rank or outer:
                self.agent_id, self.agent_rank, self.agent_start_ns = _interned(name), rank, span.start_ns
        if self.agent_rank == AGENT_RESOURCE or span.is_root:
            self.agent_settled = True

    def _start(self, span: SpanFacts, out: list[RunEvent]) -> None:
        if self.root_seen:  # another parentless span of the trace: the run began at the earliest
            self.started_ns = min(self.started_ns or span.start_ns, span.start_ns)
            return
        self.root_seen = True
        self.started_ns = span.start_ns
        root = span.root_input
        llm_model = span.llm.model if span.llm else None
        payload = _drop_none(
            {
                "model": self.first_model or llm_model,
                "tools": list(self.available_tools or ()),
                "input_hash": root.input_hash if root else None,
                "input_length": root.input_length if root else None,
                "injection": _injection(root.injection) if root else None,
                "agent_version": span.agent_version,
            }
        )
        out.append(
            self._event(f"{span.span_id}:{ev.RUN_STARTED}", ev.RUN_STARTED, span.start_ns, span.span_id, payload)
        )

    def _end(self, span: SpanFacts, out: list[RunEvent]) -> None:
        """Each parentless span records its end; the run's end and status are those of the one
        that ended last (an error wins a tie), whatever order they arrive in."""
        self._flush_pending(None, out)
        for index, policy in enumerate(span.policies):  # our SDK's local policies that fired
            event_id = f"{span.span_id}:{ev.POLICY_TRIGGERED}:{index}"
            out.append(self._event(event_id, ev.POLICY_TRIGGERED, policy.ts_ns, span.span_id, dict(policy.payload)))
        ended_last = self.status not in TERMINAL_STATUSES or (span.end_ns, span.is_error) >= (
            self.ended_ns or 0,
            self.status == STATUS_ERRORED,
        )
        if ended_last:
            self.declared_exit = span.exit_reason
        if span.is_error:
            kind = ev.RUN_ERRORED
            policy_stop = span.exit_reason == POLICY_VIOLATION
            payload = _drop_none(
                {
                    "error_type": span.error_type,
                    "error_hash": span.error_hash,
                    "total_steps": self.steps,
                    "exit_reason": POLICY_VIOLATION if policy_stop else None,
                }
            )
            if ended_last:
                self.status, self.exit_reason = STATUS_ERRORED, POLICY_VIOLATION if policy_stop else "error"
        else:
            kind = ev.RUN_COMPLETED
            if ended_last:
                self.status, self.exit_reason = STATUS_COMPLETED, self._exit_reason()
            payload = {"exit_reason": self._completed_as(span.exit_reason), "total_steps": self.steps}
        if ended_last:
            self.ended_ns = span.end_ns
        out.append(self._event(f"{span.span_id}:{kind}", kind, span.end_ns, span.span_id, payload))

    def _exit_reason(self) -> str:
        """How the completed run ended (its root that ended last decides)."""
        return self._completed_as(self.declared_exit)

    def _completed_as(self, declared: str | None) -> str:
        """How a root that completed ended the run: as our SDK's root declared it, else
        ``final_answer`` right after a text answer."""
        if declared in COMPLETED_EXIT_REASONS:
            return declared
        final = self.last_llm is not None and self.last_llm[1] == "stop" and not self.last_llm[2]
        return "final_answer" if final else "completed"

    # --- LLM calls ---------------------------------------------------------------------

    def _llm(self, span: SpanFacts, out: list[RunEvent]) -> None:
        llm = span.llm
        assert llm is not None
        known = self.call_by_response.get(llm.response_id) if llm.response_id and self.call_by_response else None
        known = known or self._same_call_as_known(span, llm.native_sdk_span)
        if known is not None:
            if known.native and not llm.native_sdk_span:
                self._amend_from_twin(known, span, out)
            elif known.finish_reason is None and llm.finish_reason is not None:
                self._finish_from_twin(known, span, llm.finish_reason, out)
            return
        stashed = self._unstash(span.span_id)
        if stashed is not None:
            llm = replace(
                llm,
                prompt=llm.prompt if llm.prompt.prompt_hash else (stashed.prompt or llm.prompt),
                output=llm.output if llm.output.output_length is not None else (stashed.output or llm.output),
            )
            if llm.finish_reason is None and llm.output.finish_reason:
                llm = replace(llm, finish_reason=normalise_finish_reason(llm.output.finish_reason))
        record = _LlmSpan(
            span.span_id, span.parent_id, span.start_ns, span.end_ns, llm.native_sdk_span, _interned(llm.finish_reason)
        )
        self._record_llm(record, llm.response_id)

        self._resolve_pending(span, llm.prompt, out)
        self.llm_calls += 1
        self.prompt_tokens += llm.prompt_tokens or 0
        self.completion_tokens += llm.completion_tokens or 0
        self.first_model = self.first_model or _interned(llm.model)
        self._offer_tools(llm.tools_available)
        if span.is_error:
            self.errors += 1
        requests = llm.output.tool_requests
        if self.last_llm is None or span.end_ns >= self.last_llm[0]:
            self.last_llm = (span.end_ns, record.finish_reason, bool(requests))
            if self.status == STATUS_COMPLETED:  # a call that reached us after the root
                self.exit_reason = self._exit_reason()
        called = _drop_none(
            {
                "model": llm.model,
                "provider": llm.provider,
                "prompt_tokens": llm.prompt_tokens,
                "prompt_hash": llm.prompt.prompt_hash,
                "prompt_length": llm.prompt.prompt_length,
                "call_id": span.span_id,
                "injection": _injection(llm.prompt.injection),
                "langfuse_prompt_name": llm.prompt_name,
                "langfuse_prompt_version": llm.prompt_version,
                # where the call sits, so a restored run still knows a second view of it
                "parent_span_id": span.parent_id or None,
                "sdk_span": True if llm.native_sdk_span else None,
            }
        )
        responded = _drop_none(
            {
                "finish_reason": llm.finish_reason,
                "completion_tokens": llm.completion_tokens,
                "output_length": llm.output.output_length,
                "output_hash": llm.output.output_hash,
                "tool_calls_requested": [r.name for r in requests],
                "tool_requests": [_request_payload(r) for r in requests],
                "latency_ms": _ms(span.start_ns, span.end_ns),
                "error_type": span.error_type,
                "response_id": llm.response_id,
            }
        )
        out.append(self._called(span, ev.LLM_CALLED, called))
        out.append(
            self._event(f"{span.span_id}:{ev.LLM_RESPONDED}", ev.LLM_RESPONDED, span.end_ns, span.span_id, responded)
        )
        self._add_requests(record, requests, llm.finish_reason, out)

    def _record_llm(self, record: _LlmSpan, response_id: str | None) -> None:
        """A new LLM call: found by span id (moved to the end of ``spans``: the calls stay in
        the order they were recorded), response id and (once kept) parent span."""
        self.spans.pop(record.span_id, None)
        self.spans[record.span_id] = record
        if response_id:
            if self.call_by_response is None:
                self.call_by_response = {}
            self.call_by_response[response_id] = record
        if self.llm_by_parent is not None:
            self.llm_by_parent.setdefault(record.parent_id, []).append(record)
        self.has_native = self.has_native or record.native

    def _by_parent(self) -> dict[str, list[_LlmSpan]]:
        """The LLM calls by parent span, each parent's in the order they were recorded: kept
        from the first native SDK span on (only a twin search needs it), built then from ``spans``."""
        if self.llm_by_parent is None:
            self.llm_by_parent = {}
            for record in self.spans.values():
                if record is not None:
                    self.llm_by_parent.setdefault(record.parent_id, []).append(record)
        return self.llm_by_parent

    def _same_call_as_known(self, span: SpanFacts, native: bool) -> _LlmSpan | None:
        """The known LLM call this span is a second view of, if any (no shared response id).

        The Anthropic SDK traces itself next to an instrumentation's span of the same call:
        as its child (OpenInference) or as an enclosed sibling (OpenLLMetry).
        """
        if not (native or self.has_native):
            return None
        parent = self.spans.get(span.parent_id)
        if parent is not None and parent.native != native:
            return parent
        by_parent = self._by_parent()
        # The twin is close in time: look at the latest few siblings, not the whole run.
        for sibling in by_parent.get(span.parent_id, [])[-TWIN_SEARCH:]:
            if sibling.native == native:
                continue
            outer_start, outer_end, inner_start, inner_end = (
                (sibling.start_ns, sibling.end_ns, span.start_ns, span.end_ns)
                if native
                else (span.start_ns, span.end_ns, sibling.start_ns, sibling.end_ns)
            )
            if outer_start <= inner_start and inner_end <= outer_end:
                return sibling
        if not native:
            for child in by_parent.get(span.span_id, ()):
                if child.native:
                    return child
        return None

    def _amend_from_twin(self, known: _LlmSpan, span: SpanFacts, out: list[RunEvent]) -> None:
        """The SDK's thin span came first and was counted; the instrumentation's richer view of
        the same call adds its content features (finish reason, output, tool requests)."""
        llm = span.llm
        assert llm is not None
        known.native = False  # now as rich as it gets: later views are plain duplicates
        self._offer_tools(llm.tools_available)
        content = LogContent(self.run_id, known.span_id, known.end_ns, llm.prompt, llm.output)
        payload = _content_payload(content, source="span")
        if llm.finish_reason:
            payload["finish_reason"] = llm.finish_reason
        event_id = f"{known.span_id}:{ev.LLM_CONTENT}:{span.span_id}"
        self._new_content_event(event_id)
        out.append(self._event(event_id, ev.LLM_CONTENT, known.end_ns, known.span_id, payload))
        self._apply_amendment(known, payload.get("finish_reason"), llm.output.tool_requests, out)

    def _finish_from_twin(self, known: _LlmSpan, span: SpanFacts, finish_reason: str, out: list[RunEvent]) -> None:
        """The other view of a call knows the finish reason the first one left empty (OpenLLMetry's
        LangChain span writes ``""`` where the Anthropic SDK's own span has ``stop_reason``)."""
        payload = {"source": "span", "finish_reason": finish_reason}
        event_id = f"{known.span_id}:{ev.LLM_CONTENT}:{span.span_id}"
        if not self._new_content_event(event_id):
            return
        out.append(self._event(event_id, ev.LLM_CONTENT, known.end_ns, known.span_id, payload))
        self._apply_amendment(known, finish_reason, (), out)

    def _apply_amendment(
        self,
        record: _LlmSpan,
        finish_reason: str | None,
        requests: Sequence[ToolRequest],
        out: list[RunEvent] | None,
    ) -> None:
        record.finish_reason = record.finish_reason or _interned(finish_reason)
        if self.last_llm is not None and self.last_llm[0] == record.end_ns:
            self.last_llm = (record.end_ns, finish_reason or self.last_llm[1], self.last_llm[2] or bool(requests))
            if self.status == STATUS_COMPLETED:
                self.exit_reason = self._exit_reason()
        self._add_requests(record, requests, finish_reason, out)

    # --- tool calls --------------------------------------------------------------------

    def _add_requests(
        self,
        llm: _LlmSpan,
        requests: Sequence[ToolRequest],
        finish_reason: str | None,
        out: list[RunEvent] | None,
    ) -> None:
        """Register the tool calls a response asked for. With no request visible but a
        ``tool_calls`` finish reason, one unnamed call stands for them until content names it.
        ``out`` is None while replaying stored events (nothing is emitted then)."""
        unnamed = llm.unnamed
        if not requests:
            if finish_reason == "tool_calls" and unnamed is None and not llm.requests:
                self._register(_Request(llm, None, None, None, None, None))
            return
        for index, req in enumerate(requests):
            if index < llm.requests:
                continue  # the same response's requests, seen again through log content
            request = _Request(llm, index, req.call_id, _interned(req.name), req.args_hash, req.args_length)
            if index == 0 and unnamed is not None and not unnamed.named:
                # The unnamed call stood for this one: drop it, or name the call it became.
                unnamed.named = True
                if unnamed.emitted:
                    request.matched = request.emitted = True
                    if out is not None:
                        out.append(self._name_emitted(unnamed, request))
                elif unnamed.matched:
                    request.matched = True  # a tool span already answered it
                else:
                    unnamed.matched = True
                    self._settle(unnamed)
            self._register(request)

    def _settle(self, request: _Request) -> None:
        """The request is matched: it no longer waits for a tool span (if it did), and leaves
        its queue now rather than at the next lookup (a run whose calls all paired keeps none)."""
        if self.pending is not None and request in self.pending:
            self._unpend(request)
        self._forget_call_id(request)
        if request.name is None:
            _first_open(self.open_unnamed)
            self.open_unnamed = self.open_unnamed or None
        elif self.open_requests is not None:
            self.open_requests = _trim(self.open_requests, request.name)

    def _forget_call_id(self, request: _Request) -> None:
        """A matched request's call id maps to None: only "matched" is asked of it from now on."""
        calls = self.requests_by_call_id
        if request.call_id and calls is not None and calls.get(request.call_id) is request:
            calls[request.call_id] = None

    def _tool_span_answered(self, tool_span: _ToolSpan, name: str | None) -> None:
        """A tool span a request (of tool ``name``) matched leaves the queues it heads."""
        tool_span.matched = True
        if tool_span.call_id and self.open_tool_spans_by_call_id is not None:
            if self.open_tool_spans_by_call_id.get(tool_span.call_id) is tool_span:
                del self.open_tool_spans_by_call_id[tool_span.call_id]
            self.open_tool_spans_by_call_id = self.open_tool_spans_by_call_id or None
        _first_open(self.open_tool_spans_any)
        self.open_tool_spans_any = self.open_tool_spans_any or None
        if name is not None and self.open_tool_spans is not None:
            self.open_tool_spans = _trim(self.open_tool_spans, name)

    def _unpend(self, request: _Request) -> None:
        assert self.pending is not None
        self.pending.remove(request)
        if not self.pending:
            self.pending = None

    def _register(self, request: _Request) -> None:
        llm = request.llm
        if request.index is None:
            llm.unnamed = request
        else:
            llm.requests += 1  # index == llm.requests: in order
        # Restoring: its tool call is stored already; a tool span may still answer it later.
        request.emitted = request.emitted or bool(self.replay_emitted and request.key in self.replay_emitted)
        if request.matched:
            return
        if request.call_id:
            if self.requests_by_call_id is None:
                self.requests_by_call_id = {}
            self.requests_by_call_id[request.call_id] = request
        tool_span = self._unmatched_tool_span(request.name, request.call_id)
        if tool_span is not None:
            self._tool_span_answered(tool_span, request.name)
            request.matched = True
            self._forget_call_id(request)
            return
        if request.name is None:
            if self.open_unnamed is None:
                self.open_unnamed = []
            self.open_unnamed.append(request)
        else:
            if self.open_requests is None:
                self.open_requests = {}
            self.open_requests.setdefault(request.name, []).append(request)
        if not request.emitted:
            if self.pending is None:
                self.pending = []
            self.pending.append(request)

    def _name_emitted(self, unnamed: _Request, request: _Request | ToolRequest) -> RunEvent:
        """The unnamed call already counted learns its name and arguments."""
        call_id = SYNTHETIC_PREFIX + unnamed.key
        payload = _drop_none(
            {
                "tool_name": request.name,
                "args_hash": request.args_hash,
                "args_length": request.args_length,
                "tool_call_id": request.call_id,
            }
        )
        return self._event(f"{unnamed.key}:{ev.TOOL_CONTENT}", ev.TOOL_CONTENT, unnamed.ts_ns, call_id, payload)

    # A request and a tool span are one call when both carry a call id and the ids are equal;
    # when either carries none, the oldest unmatched one of the same tool (any tool for an
    # unnamed request). The rule is symmetric, so whichever side arrives first, the pairs are
    # the same.

    def _unmatched_tool_span(self, name: str | None, call_id: str | None) -> _ToolSpan | None:
        """The tool span that answers a request, seen before it."""
        if call_id and self.open_tool_spans_by_call_id is not None:
            tool_span = self.open_tool_spans_by_call_id.pop(call_id, None)
            if tool_span is not None and not tool_span.matched:
                return tool_span
        if name is None:
            return _first_open(self.open_tool_spans_any)
        if self.open_tool_spans is None:
            return None
        return _first_open_where(self.open_tool_spans.get(name), lambda t: not call_id or t.call_id is None)

    def _matching_request(self, name: str, call_id: str | None) -> _Request | None:
        """The request a tool span answers: same call id, else the oldest one of that tool that
        the rule allows, else the oldest unnamed one."""
        if call_id and self.requests_by_call_id is not None and call_id in self.requests_by_call_id:
            request = self.requests_by_call_id[call_id]
            return None if request is None or request.matched else request
        named = None
        if self.open_requests is not None:
            named = _first_open_where(self.open_requests.get(name), lambda r: not call_id or r.call_id is None)
        return named or _first_open(self.open_unnamed)

    def _open_tool_span(self, name: str, call_id: str | None) -> None:
        tool_span = _ToolSpan(call_id)
        if call_id:
            if self.open_tool_spans_by_call_id is None:
                self.open_tool_spans_by_call_id = {}
            self.open_tool_spans_by_call_id[call_id] = tool_span
        if self.open_tool_spans is None:
            self.open_tool_spans = {}
        self.open_tool_spans.setdefault(name, []).append(tool_span)
        if self.open_tool_spans_any is None:
            self.open_tool_spans_any = []
        self.open_tool_spans_any.append(tool_span)

    def _tool(self, span: SpanFacts, out: list[RunEvent]) -> None:
        tool = span.tool
        assert tool is not None
        name = _interned(tool.name)
        request = self._matching_request(name, tool.call_id)
        if request is not None:
            request.matched = True
            self._settle(request)
            if request.emitted:
                # Counted from the LLM's request before this span came (the run ended first):
                # the span still says how the call went.
                if span.is_error:
                    self.errors += 1
                if request.name is None and not request.named:  # and names it, if nothing had
                    request.named = True
                    seen = ToolRequest(tool.call_id, name, tool.args_hash, tool.args_length)
                    out.append(self._name_emitted(request, seen))
                out.append(
                    self._event(
                        f"{span.span_id}:{ev.TOOL_RESPONDED}",
                        ev.TOOL_RESPONDED,
                        span.end_ns,
                        SYNTHETIC_PREFIX + request.key,
                        self._tool_outcome(span),
                    )
                )
                return
        else:
            self._open_tool_span(name, tool.call_id)
        self.tool_calls += 1
        if span.is_error:
            self.errors += 1
        called = _drop_none(
            {
                "tool_name": name,
                # The arguments the model asked for, when a request is known: the span's own
                # input is shaped by each framework (envelopes, per-step metadata).
                "args_hash": (request.args_hash if request else None) or tool.args_hash,
                "args_length": _args_length(request, tool.args_hash, tool.args_length),
                "call_id": span.span_id,
                "tool_call_id": tool.call_id or (request.call_id if request else None),
            }
        )
        responded = self._tool_outcome(span)
        out.append(self._called(span, ev.TOOL_CALLED, called))
        out.append(
            self._event(f"{span.span_id}:{ev.TOOL_RESPONDED}", ev.TOOL_RESPONDED, span.end_ns, span.span_id, responded)
        )

    @staticmethod
    def _tool_outcome(span: SpanFacts) -> dict[str, Any]:
        """The ``tool.responded`` payload of a tool span."""
        tool = span.tool
        assert tool is not None
        return _drop_none(
            {
                "tool_name": tool.name,
                "success": not span.is_error,
                "error_type": span.error_type,
                "error_hash": span.error_hash,
                "output_length": tool.output_length,
                "output_hash": tool.output_hash,
                "latency_ms": _ms(span.start_ns, span.end_ns),
                "injection": _injection(tool.injection),
            }
        )

    def _resolve_pending(self, llm_span: SpanFacts, prompt: PromptFeatures, out: list[RunEvent]) -> None:
        """A later LLM call in the same loop settles earlier requests no tool span answered."""
        if not self.pending:
            return
        by_id = {r.call_id: r for r in prompt.tool_results if r.call_id}
        unnamed = [r for r in prompt.tool_results if not r.call_id]
        for request in list(self.pending):
            if request.ts_ns > llm_span.start_ns:
                continue
            result = by_id.get(request.call_id) if request.call_id else None
            if result is None and request.parent_id != llm_span.parent_id:
                continue
            if result is None and unnamed:
                result = unnamed.pop(0)
            self._emit_request(request, result, llm_span.start_ns, out)

    def _flush_pending(self, result: ToolResultSeen | None, out: list[RunEvent]) -> None:
        for request in list(self.pending or ()):
            self._emit_request(request, result, None, out)

    def _emit_request(
        self, request: _Request, result: ToolResultSeen | None, result_ns: int | None, out: list[RunEvent]
    ) -> None:
        self._unpend(request)
        request.emitted = True
        self.tool_calls += 1
        self.steps += 1
        call_id = SYNTHETIC_PREFIX + request.key
        called = {
            "tool_name": request.name,
            "args_hash": request.args_hash,
            "args_length": request.args_length,
            "call_id": call_id,
            "tool_call_id": request.call_id,
            # unnamed: only the response's finish reason said a tool was asked for
            "source": "llm_request" if request.name is not None else "finish_reason",
        }
        out.append(
            self._event(f"{request.key}:{ev.TOOL_CALLED}", ev.TOOL_CALLED, request.ts_ns, call_id, _drop_none(called))
        )
        if result is not None and result_ns is not None:
            responded = _drop_none(
                {
                    "tool_name": request.name,
                    "success": True,
                    "output_length": result.output_length,
                    "output_hash": result.output_hash,
                    "latency_ms": _ms(request.ts_ns, result_ns),
                    "injection": _injection(result.injection),
                    "source": "llm_request",
                }
            )
            out.append(
                self._event(f"{request.key}:{ev.TOOL_RESPONDED}", ev.TOOL_RESPONDED, result_ns, call_id, responded)
            )

    # --- retrieval ---------------------------------------------------------------------

    def _retrieval(self, span: SpanFacts, out: list[RunEvent]) -> None:
        retrieval = span.retrieval
        assert retrieval is not None
        self.retrievals += 1
        if span.is_error:
            self.errors += 1
        called = _drop_none(
            {
                "index_name": retrieval.index_name,
                "query_hash": retrieval.query_hash,
                "query_length": retrieval.query_length,
                "call_id": span.span_id,
            }
        )
        responded = _drop_none(
            {
                "index_name": retrieval.index_name,
                "result_count": retrieval.result_count,
                "top_score": retrieval.top_score,
                "latency_ms": _ms(span.start_ns, span.end_ns),
                "error_type": span.error_type,
                "injection": _injection(retrieval.injection),
            }
        )
        out.append(self._called(span, ev.RETRIEVAL_CALLED, called))
        out.append(
            self._event(
                f"{span.span_id}:{ev.RETRIEVAL_RESPONDED}", ev.RETRIEVAL_RESPONDED, span.end_ns, span.span_id, responded
            )
        )

    # --- events ------------------------------------------------------------------------

    def _called(self, span: SpanFacts, kind: str, payload: dict[str, Any]) -> RunEvent:
        self.steps += 1
        return self._event(f"{span.span_id}:{kind}", kind, span.start_ns, span.span_id, payload)

    def _event(self, event_id: str, kind: str, ts_ns: int, call_id: str, payload: dict[str, Any]) -> RunEvent:
        if not self.started_ns or (ts_ns and ts_ns < self.started_ns and not self.root_seen):
            self.started_ns = ts_ns
        self.last_event_ns = max(self.last_event_ns, ts_ns)
        return RunEvent(self.run_id, event_id, kind, ts_ns, call_id, payload)

    # --- rebuilding from the store ------------------------------------------------------

    @classmethod
    def restore(cls, row: RunRow, events: Iterable[RunEvent], default_agent_id: str) -> RunState:
        """The state of a run the store knows, so late or re-delivered spans stay exactly-once."""
        state = cls(
            run_id=row.run_id,
            default_agent_id=default_agent_id,
            agent_id=row.agent_id,
            agent_rank=AGENT_RESTORED,
            service_name=row.service_name,
            status=row.status,
            started_ns=row.started_ns,
            ended_ns=row.ended_ns,
            last_event_ns=row.last_event_ns,
            exit_reason=row.exit_reason,
            steps=row.step_count,
            llm_calls=row.llm_calls,
            tool_calls=row.tool_calls,
            retrievals=row.retrievals,
            errors=row.errors,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            source=row.source,
        )
        ordered = sorted(events, key=RunEvent.sort_key)
        # A request's own tool.called sorts before the response that asked for it (same time).
        state.replay_emitted = {
            e.call_id[len(SYNTHETIC_PREFIX) :]
            for e in ordered
            if e.kind == ev.TOOL_CALLED and e.call_id.startswith(SYNTHETIC_PREFIX)
        }
        for event in ordered:
            state._replay(event)
        state.replay_emitted = None
        state.replay_calls = None
        if state.status == STATUS_STALLED:
            state.status = STATUS_RUNNING  # it is alive again: new spans arrived
        return state

    def _replay(self, event: RunEvent) -> None:
        payload = event.payload
        if event.event_id.startswith(SDK_PREFIX):
            self._replay_sdk(event)
            return
        if event.kind == ev.LLM_CONTENT:
            self._new_content_event(event.event_id)
            if payload.get("source") == "span":
                # Another span's view of this call (a twin) stored only as this amendment: its id
                # ends the event id, and it is seen, or a re-delivery would count it as a call.
                self.spans.setdefault(event.event_id.rpartition(":")[2], None)
            content = _content_from_payload(self.run_id, event)
            record = self.spans.get(event.call_id)
            if record is not None:
                record.native = False
                amended = content.output.tool_requests if content.output is not None else ()
                self._apply_amendment(record, payload.get("finish_reason"), amended, None)
            elif event.call_id not in self.spans:
                self._stash(content)
            return
        if not event.call_id.startswith(SYNTHETIC_PREFIX):
            self.spans.setdefault(event.call_id, None)
            self._unstash(event.call_id)
        elif event.kind == ev.TOOL_RESPONDED:
            # A tool span that came after its call was counted from the LLM's request stores only
            # its tool.responded, under the request's call id: the span is seen all the same (its
            # id leads the event id), or a re-delivery would take it again and count its error twice.
            span_id = event.event_id.rpartition(":")[0]
            if span_id != event.call_id[len(SYNTHETIC_PREFIX) :]:
                self.spans.setdefault(span_id, None)
        if event.kind == ev.RUN_STARTED:
            self.root_seen = True
            self.agent_settled = True
        elif event.kind in (ev.RUN_COMPLETED, ev.RUN_ERRORED) and payload.get("exit_reason") == POLICY_VIOLATION:
            self.declared_exit = POLICY_VIOLATION  # our SDK's root said so: no later span changes it
        elif event.kind == ev.LLM_CALLED:
            self.first_model = self.first_model or _interned(payload.get("model"))
            if self.replay_calls is None:
                self.replay_calls = {}
            self.replay_calls[event.call_id] = (
                payload.get("parent_span_id") or "",
                event.ts_ns,
                bool(payload.get("sdk_span")),
            )
        elif event.kind == ev.LLM_RESPONDED:
            calls = self.replay_calls or {}
            parent, start_ns, native = calls.pop(event.call_id, ("", event.ts_ns, False))
            finish = _interned(payload.get("finish_reason"))
            record = _LlmSpan(event.call_id, parent, start_ns, event.ts_ns, native, finish)
            self._record_llm(record, payload.get("response_id"))
            requests = [
                ToolRequest(r.get("call_id"), r["name"], r.get("args_hash"), r.get("args_length"))
                for r in payload.get("tool_requests", ())
            ]
            if self.last_llm is None or event.ts_ns >= self.last_llm[0]:
                self.last_llm = (event.ts_ns, finish, bool(requests))
            self._add_requests(record, requests, payload.get("finish_reason"), None)
        elif event.kind == ev.TOOL_CALLED:
            name = _interned(payload.get("tool_name", "unknown"))
            if event.call_id.startswith(SYNTHETIC_PREFIX):
                pass  # its request is marked emitted when registered (replay_emitted)
            else:
                answered = self._matching_request(name, payload.get("tool_call_id"))
                if answered is not None:
                    answered.matched = True
                    self._settle(answered)
                else:
                    self._open_tool_span(name, payload.get("tool_call_id"))


class _Matchable(Protocol):
    matched: bool


M = TypeVar("M", bound=_Matchable)


# Where a run's agent id comes from, strongest first (one rule for every convention):
AGENT_RESOURCE = 0  # gen_ai.agent.name on the resource: known from the first span
AGENT_ROOT = 1  # gen_ai.agent.name / agent.name on the root span
AGENT_SPAN = 2  # the same on another span: the outermost (earliest-starting) one
AGENT_ROOT_SPAN_NAME = 3  # the name of a root OpenInference AGENT span (LangGraph's graph name)
AGENT_WORKFLOW = 4  # gen_ai.workflow.name / traceloop.workflow.name (OpenLLMetry copies it onto every span)
AGENT_SERVICE = 5  # the resource's service.name
AGENT_RESTORED = 2  # a run rebuilt from the store keeps its id unless a stronger name comes


def _strongest_agent_name(span: SpanFacts) -> tuple[int, str] | None:
    """(rank, name) of the strongest agent name a span offers, if any."""
    if span.resource_agent_name:
        return AGENT_RESOURCE, span.resource_agent_name
    is_root = span.is_root
    if span.agent_name:
        return (AGENT_ROOT if is_root else AGENT_SPAN), span.agent_name
    if is_root and span.agent_span_name:
        return AGENT_ROOT_SPAN_NAME, span.agent_span_name
    if span.workflow_name:
        return AGENT_WORKFLOW, span.workflow_name
    if span.service_name:
        return AGENT_SERVICE, span.service_name
    return None


def _first_open(queue: list[M] | None) -> M | None:
    """The oldest item not matched yet; matched ones at the front are dropped for good (the
    queue holds only unmatched items and is short: deleting at its head is cheap)."""
    while queue:
        if not queue[0].matched:
            return queue[0]
        del queue[0]
    return None


def _trim(queues: dict[str, list[M]], name: str) -> dict[str, list[M]] | None:
    """``queues`` with the matched items at the head of ``name``'s queue dropped (and the queue,
    if that empties it); None if no queue is left."""
    queue = queues.get(name)
    if queue is not None and _first_open(queue) is None:
        del queues[name]
    return queues or None


def _first_open_where(queue: list[M] | None, allowed: Callable[[M], bool]) -> M | None:
    """The oldest unmatched item ``allowed`` takes (matched ones at the head dropped, as above)."""
    first = _first_open(queue)
    if first is None or allowed(first):
        return first
    assert queue is not None
    return next((item for item in queue if not item.matched and allowed(item)), None)


def _args_length(request: _Request | None, span_hash: str | None, span_length: int | None) -> int | None:
    """The length of the arguments a tool call is recorded with: the request's when its hash is
    taken, else the span's (our SDK's requests carry no length: the span's, if the same hash)."""
    if request is None or not request.args_hash:
        return span_length
    if request.args_length is None and request.args_hash == span_hash:
        return span_length
    return request.args_length


def _request_payload(request: ToolRequest) -> dict[str, Any]:
    return _drop_none(
        {
            "call_id": request.call_id,
            "name": request.name,
            "args_hash": request.args_hash,
            "args_length": request.args_length,
        }
    )


def _merge_log_content(previous: LogContent | None, new: LogContent) -> LogContent:
    if previous is None:
        return new
    return LogContent(
        run_id=new.run_id,
        span_id=new.span_id,
        ts_ns=max(new.ts_ns, previous.ts_ns),
        prompt=new.prompt or previous.prompt,
        output=new.output or previous.output,
    )


def _content_payload(content: LogContent, source: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"source": source}
    if content.prompt is not None:
        payload.update(
            prompt_hash=content.prompt.prompt_hash,
            prompt_length=content.prompt.prompt_length,
            injection=_injection(content.prompt.injection),
        )
    if content.output is not None:
        output = content.output
        payload.update(
            output_hash=output.output_hash,
            output_length=output.output_length,
            finish_reason=response_finish_reason(output.finish_reason, bool(output.tool_requests)),
            tool_calls_requested=[r.name for r in output.tool_requests],
            tool_requests=[_request_payload(r) for r in output.tool_requests],
        )
    return _drop_none(payload)


def _content_digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _content_from_payload(run_id: str, event: RunEvent) -> LogContent:
    """Rebuild stashed log content from its stored ``llm.content`` event."""
    p = event.payload
    prompt = None
    if "prompt_hash" in p:
        injection = p.get("injection")
        prompt = PromptFeatures(
            p["prompt_hash"],
            p.get("prompt_length"),
            Injection(tuple(injection["matched_patterns"]), injection["input_length"], injection["source"])
            if injection
            else None,
            (),
        )
    output = None
    if "output_length" in p or "tool_requests" in p:
        output = OutputFeatures(
            p.get("output_hash"),
            p.get("output_length"),
            tuple(
                ToolRequest(r.get("call_id"), r["name"], r.get("args_hash"), r.get("args_length"))
                for r in p.get("tool_requests", ())
            ),
            p.get("finish_reason"),
        )
    return LogContent(run_id, event.call_id, event.ts_ns, prompt, output)


__all__ = [
    "STATUS_COMPLETED",
    "STATUS_ERRORED",
    "STATUS_RUNNING",
    "STATUS_STALLED",
    "RunState",
]
