"""What detectors know about one run, updated incrementally, one event at a time.

Constant memory per run: recent tool calls in a bounded window, recent LLM calls in a bounded
map, counters, and a few first/last values. Nothing is rescanned per event beyond that window,
so a 1,000-step run costs per event what a 10-step run does. The sidecar keeps one view per
open run (thousands): a collection the run has not needed yet is not allocated, and repeated
names (tools, retrieval indexes) are interned.

Each ``*.called`` opens a step, numbered by its start time among the calls seen so far (spec
§1), so parallel calls exported as they end still get their timestamp order.
"""

from __future__ import annotations

import bisect
import sys
from collections.abc import Iterable, Iterator, Mapping, MutableSet, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import events as ev
from .base import MAX_WINDOW
from .events import RunEvent

RECENT_LLM_CALLS = 32  # LLM calls whose answers may still be amended (content arriving late)
TOKEN_SEQUENCE_EDGE = 10  # context-bloat evidence keeps the first and last this many values
_NO_TOOL_COUNTS: Mapping[str, int] = MappingProxyType({})


def _name(value: Any) -> Any:
    """A name many runs repeat (a tool's, an index's), shared between them rather than copied."""
    return sys.intern(value) if type(value) is str else value


class FailureTypes(MutableSet[str]):
    """The failure types that fired in a run: a set of at most a few dozen names, kept in a
    tuple (an empty one is shared), 40 bytes per run where an empty ``set`` takes 216."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[str] = ()) -> None:
        self._items: tuple[str, ...] = tuple(dict.fromkeys(items))

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"FailureTypes({set(self._items)!r})"

    def add(self, value: str) -> None:
        if value not in self._items:
            self._items += (value,)

    def discard(self, value: str) -> None:
        if value in self._items:
            self._items = tuple(item for item in self._items if item != value)

    def update(self, values: Iterable[str]) -> None:
        for value in values:
            self.add(value)


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
    # Bounded lists, not deques: a deque costs 760 bytes even when nearly empty (open runs add up);
    # None until the run's first tool call (read through ``tools``, ``tool_counts``).
    _tools: list[ToolCall] | None = None  # the most recent tool calls, at most MAX_WINDOW
    _tool_counts: dict[str, int] | None = None
    # the recent LLM calls by call id, oldest first (a dict: an OrderedDict is twice the size)
    llm: dict[str, LlmCall] = field(default_factory=dict)
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
    _token_tail: list[int] | None = None  # at most TOKEN_SEQUENCE_EDGE, once the head is full
    _retrieval_log: list[Retrieval] | None = None  # at most MAX_WINDOW (read through retrieval_log)
    available_tools: tuple[str, ...] = ()
    outcome: str | None = None  # completed | errored | stalled
    final_answer: bool = False
    # the failure types that fired (each fires at most once): 40 bytes where a set takes 216; a
    # plain attribute, as the engine asks it before every detector (any set may be put in it)
    fired: FailureTypes | set[str] = field(default_factory=FailureTypes)
    # P75 step count of the agent's recent completed runs, or None while there are too few
    baseline_p75: float | None = None
    # the step of the event just applied (a response shares its call's step)
    event_step: int = 0
    # start times of the most recent calls, sorted, and how many calls came before them
    recent_starts: list[int] = field(default_factory=list)
    older_calls: int = 0

    @property
    def tools(self) -> Sequence[ToolCall]:
        """The most recent tool calls (at most MAX_WINDOW), oldest first."""
        return self._tools or ()

    @property
    def tool_counts(self) -> Mapping[str, int]:
        """Tool calls per tool name, over the whole run."""
        return self._tool_counts or _NO_TOOL_COUNTS

    @property
    def retrieval_log(self) -> Sequence[Retrieval]:
        """The most recent retrievals (at most MAX_WINDOW), oldest first."""
        return self._retrieval_log or ()

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
            name = _name(payload.get("tool_name"))
            if self._tools is None:
                self._tools = []
            self._tools.append(ToolCall(event.call_id, name, payload.get("args_hash"), self.event_step))
            if len(self._tools) > MAX_WINDOW:
                del self._tools[0]
            if name is not None:
                self._count_tool(name)
            self.tool_calls += 1
            self.last_tool_start_ns = max(self.last_tool_start_ns, event.ts_ns)
        elif kind == ev.TOOL_CONTENT:
            # A tool call counted without its name learns it: judged again as that tool's call.
            tool = self._tool(event.call_id)
            name = _name(payload.get("tool_name"))
            if tool is None or tool.name is not None or name is None:
                return [event]
            tool.name = name
            tool.args_hash = payload.get("args_hash")
            self._count_tool(name)
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
                del self.llm[next(iter(self.llm))]
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
            if self._retrieval_log is None:
                self._retrieval_log = []
            self._retrieval_log.append(
                Retrieval(
                    _name(payload.get("index_name")), payload.get("result_count"), payload.get("top_score"), self.step
                )
            )
            if len(self._retrieval_log) > MAX_WINDOW:
                del self._retrieval_log[0]
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

    def _count_tool(self, name: str) -> None:
        if self._tool_counts is None:
            self._tool_counts = {}
        self._tool_counts[name] = self._tool_counts.get(name, 0) + 1

    def _tool(self, call_id: str) -> ToolCall | None:
        for call in reversed(self._tools or ()):
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
            if self._token_tail is None:
                self._token_tail = []
            self._token_tail.append(tokens)
            if len(self._token_tail) > TOKEN_SEQUENCE_EDGE:
                del self._token_tail[0]

    def token_sequence(self) -> list[int]:
        return [*self.token_head, *(self._token_tail or ())]

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
        tools = self._tools
        if tools is None:
            return []
        return tools[-n:] if n < len(tools) else list(tools)

    def tool_of(self, event: RunEvent) -> ToolCall | None:
        """The recent tool call an event is about."""
        return self._tool(event.call_id)

    def last_tool_call(self) -> ToolCall | None:
        """The latest-starting of the recent tool calls."""
        return max(self._tools, key=lambda call: call.step) if self._tools else None

    @property
    def llm_calls_since_tool(self) -> int:
        """LLM calls that started after the last tool call started (at most MAX_WINDOW)."""
        return len(self.llm_starts) - bisect.bisect_right(self.llm_starts, self.last_tool_start_ns)
