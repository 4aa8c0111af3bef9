"""What detectors know about one run, updated incrementally, one event at a time.

Constant memory per run: recent tool calls in a bounded window, recent LLM calls in a bounded
map, counters, and a few first/last values. Nothing is rescanned per event beyond that window,
so a 1,000-step run costs per event what a 10-step run does.

Each ``*.called`` opens a step, numbered by its start time among the calls seen so far (spec
§1), so parallel calls exported as they end still get their timestamp order.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import events as ev
from .base import MAX_WINDOW
from .events import RunEvent

RECENT_LLM_CALLS = 32  # LLM calls whose answers may still be amended (content arriving late)
TOKEN_SEQUENCE_EDGE = 10  # context-bloat evidence keeps the first and last this many values


@dataclass(slots=True)
class ToolCall:
    call_id: str
    name: str | None  # None: the instrumentation withheld it (only a finish reason said a tool was asked for)
    args_hash: str | None
    step: int
    success: bool | None = None  # None until its response arrives
    error_type: str | None = None


@dataclass(slots=True)
class LlmCall:
    step: int
    finish_reason: str | None = None
    output_length: int | None = None
    requested_tools: bool = False
    truncated: bool = False
    empty: bool = False
    responded: bool = False


@dataclass(slots=True)
class Retrieval:
    index_name: str | None
    result_count: int | None
    top_score: float | None
    step: int


@dataclass(slots=True)
class RunView:
    run_id: str
    agent_id: str
    step: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    retrievals: int = 0
    # Bounded lists, not deques: a deque costs 760 bytes even when nearly empty (open runs add up).
    tools: list[ToolCall] = field(default_factory=list)  # the most recent tool calls, at most MAX_WINDOW
    tool_counts: dict[str, int] = field(default_factory=dict)
    llm: OrderedDict[str, LlmCall] = field(default_factory=OrderedDict)
    # start times of the latest LLM calls (sorted, at most MAX_WINDOW) and of the latest-starting
    # tool call: "LLM calls after the last tool call" by time, whatever order spans arrive in
    llm_starts: list[int] = field(default_factory=list)
    last_tool_start_ns: int = -1
    truncations: int = 0
    first_truncation_step: int | None = None
    last_truncation_step: int | None = None
    empty_responses: int = 0
    first_empty_step: int | None = None
    token_calls: int = 0
    first_tokens: int | None = None
    last_tokens: int | None = None
    token_head: list[int] = field(default_factory=list)
    token_tail: list[int] = field(default_factory=list)  # at most TOKEN_SEQUENCE_EDGE
    retrieval_log: list[Retrieval] = field(default_factory=list)  # at most MAX_WINDOW
    available_tools: tuple[str, ...] = ()
    outcome: str | None = None  # completed | errored | stalled
    final_answer: bool = False
    fired: set[str] = field(default_factory=set)
    # P75 step count of the agent's recent completed runs, or None while there are too few
    baseline_p75: float | None = None
    # the step of the event just applied (a response shares its call's step)
    event_step: int = 0
    # start times of the most recent calls, sorted, and how many calls came before them
    recent_starts: list[int] = field(default_factory=list)
    older_calls: int = 0

    def apply(self, event: RunEvent) -> list[RunEvent]:
        """Fold one event in; returns the events detectors should look at (an ``llm.content``
        amendment of a known call also yields that call's amended ``llm.responded``)."""
        kind = event.kind
        payload = event.payload
        if kind in ev.CALLED_KINDS:
            self.step += 1
            self.event_step = self._step_by_start(event.ts_ns)
        elif kind not in ev.RESPONDED_KINDS and kind != ev.LLM_CONTENT:
            self.event_step = self.step
        if kind == ev.TOOL_CALLED:
            name = payload.get("tool_name")
            self.tools.append(ToolCall(event.call_id, name, payload.get("args_hash"), self.event_step))
            if len(self.tools) > MAX_WINDOW:
                del self.tools[0]
            if name is not None:
                self.tool_counts[name] = self.tool_counts.get(name, 0) + 1
            self.tool_calls += 1
            self.last_tool_start_ns = max(self.last_tool_start_ns, event.ts_ns)
        elif kind == ev.TOOL_CONTENT:
            # A tool call counted without its name learns it: judged again as that tool's call.
            tool = self._tool(event.call_id)
            name = payload.get("tool_name")
            if tool is None or tool.name is not None or name is None:
                return [event]
            tool.name = name
            tool.args_hash = payload.get("args_hash")
            self.tool_counts[name] = self.tool_counts.get(name, 0) + 1
            self.event_step = tool.step
            named = RunEvent(event.run_id, event.event_id, ev.TOOL_CALLED, event.ts_ns, event.call_id, dict(payload))
            return [event, named]
        elif kind == ev.TOOL_RESPONDED:
            tool = self._tool(event.call_id)
            self.event_step = tool.step if tool else self.step
            if tool is not None:
                tool.success = bool(payload.get("success", True))
                tool.error_type = payload.get("error_type")
        elif kind == ev.LLM_CALLED:
            self.llm_calls += 1
            bisect.insort(self.llm_starts, event.ts_ns)
            if len(self.llm_starts) > MAX_WINDOW:
                del self.llm_starts[0]
            self.llm[event.call_id] = LlmCall(self.event_step)
            while len(self.llm) > RECENT_LLM_CALLS:
                self.llm.popitem(last=False)
            tokens = payload.get("prompt_tokens")
            if isinstance(tokens, int) and tokens > 0:
                self._tokens(tokens)
        elif kind == ev.LLM_RESPONDED:
            call = self.llm.get(event.call_id)
            self.event_step = call.step if call else self.step
            if call is not None:
                self._answer(call, payload)
        elif kind == ev.LLM_CONTENT:
            call = self.llm.get(event.call_id)
            if call is None or not call.responded:
                return [event]
            self.event_step = call.step
            merged = dict(payload)
            if call.finish_reason and not merged.get("finish_reason"):
                merged["finish_reason"] = call.finish_reason
            self._answer(call, merged)
            amended = RunEvent(event.run_id, event.event_id, ev.LLM_RESPONDED, event.ts_ns, event.call_id, merged)
            return [event, amended]
        elif kind == ev.RETRIEVAL_CALLED:
            self.retrievals += 1
        elif kind == ev.RETRIEVAL_RESPONDED:
            self.event_step = self.step
            self.retrieval_log.append(
                Retrieval(payload.get("index_name"), payload.get("result_count"), payload.get("top_score"), self.step)
            )
            if len(self.retrieval_log) > MAX_WINDOW:
                del self.retrieval_log[0]
        elif kind == ev.RUN_STARTED:
            self.available_tools = tuple(payload.get("tools") or ())
        elif kind == ev.RUN_COMPLETED:
            self.outcome = "completed"
            self.final_answer = payload.get("exit_reason") == "final_answer"
        elif kind == ev.RUN_ERRORED:
            self.outcome = "errored"
            self.final_answer = False
        return [event]

    # --- helpers ---------------------------------------------------------------------------

    def _step_by_start(self, start_ns: int) -> int:
        """Steps follow start times (spec §1), not arrival: a call that started before calls
        already seen (parallel tool calls exported as they end) takes its place among them.
        Calls seen earlier keep the number they had when they were judged."""
        position = bisect.bisect_right(self.recent_starts, start_ns)
        self.recent_starts.insert(position, start_ns)
        if len(self.recent_starts) > MAX_WINDOW:  # constant memory: older calls become a count
            self.recent_starts.pop(0)
            self.older_calls += 1
            position -= 1
        return self.older_calls + position + 1

    def _tool(self, call_id: str) -> ToolCall | None:
        for call in reversed(self.tools):
            if call.call_id == call_id:
                return call
        return None

    def _tokens(self, tokens: int) -> None:
        self.token_calls += 1
        if self.first_tokens is None:
            self.first_tokens = tokens
        self.last_tokens = tokens
        if len(self.token_head) < TOKEN_SEQUENCE_EDGE:
            self.token_head.append(tokens)
        else:
            self.token_tail.append(tokens)
            if len(self.token_tail) > TOKEN_SEQUENCE_EDGE:
                del self.token_tail[0]

    def token_sequence(self) -> list[int]:
        return [*self.token_head, *self.token_tail]

    def _answer(self, call: LlmCall, payload: Mapping[str, Any]) -> None:
        """Record (or amend) an LLM answer, keeping the run's counters exact."""
        call.responded = True
        call.finish_reason = payload.get("finish_reason") or call.finish_reason
        if payload.get("output_length") is not None:
            call.output_length = payload["output_length"]
        call.requested_tools = call.requested_tools or bool(payload.get("tool_calls_requested"))
        if call.finish_reason == "length" and not call.truncated:
            call.truncated = True
            self.truncations += 1
            if self.first_truncation_step is None:
                self.first_truncation_step = call.step
            self.last_truncation_step = max(self.last_truncation_step or 0, call.step)
        empty = call.finish_reason == "stop" and call.output_length == 0 and not call.requested_tools
        if empty and not call.empty:
            call.empty = True
            self.empty_responses += 1
            if self.first_empty_step is None:
                self.first_empty_step = call.step

    # --- what detectors ask ------------------------------------------------------------------

    def recent_tools(self, n: int) -> list[ToolCall]:
        """The last ``n`` tool calls, oldest first."""
        return self.tools[-n:] if n < len(self.tools) else list(self.tools)

    def tool_of(self, event: RunEvent) -> ToolCall | None:
        """The recent tool call an event is about."""
        return self._tool(event.call_id)

    def last_tool_call(self) -> ToolCall | None:
        """The latest-starting of the recent tool calls."""
        return max(self.tools, key=lambda call: call.step) if self.tools else None

    @property
    def llm_calls_since_tool(self) -> int:
        """LLM calls that started after the last tool call started (at most MAX_WINDOW)."""
        return len(self.llm_starts) - bisect.bisect_right(self.llm_starts, self.last_tool_start_ns)
