"""What one open run's ``RunState`` holds (the sidecar keeps tens of thousands): collections made
only when the run needs them, queues left once their calls pair, names shared between runs —
and a budget for a whole open run (assembly, detectors' view, policies), in process."""

from __future__ import annotations

import gc
import json
import tracemalloc
import uuid
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from detectors import events as ev
from detectors.engine import DetectionEngine
from detectors.events import RunEvent
from detectors.policy_rules import PolicyRunState, observe
from detectors.prices import DEFAULT_MODEL_PRICES
from detectors.run_view import RunView
from receiver.assemble import RunState
from receiver.content import Hasher, OutputFeatures, ToolRequest
from receiver.keys import ANTHROPIC_NATIVE_SCOPE
from receiver.spans import LogContent, SpanFacts, translate_request

T0 = 1_795_000_000_000_000_000
ROOT_ID = "aaaaaaaaaaaaaaaa"


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def llm_span(
    span_id: str,
    start: int,
    tool: str | None = None,
    call_id: str | None = None,
    response_id: str | None = None,
    parent: str = ROOT_ID,
    end: int | None = None,
    content: bool = True,
) -> Span:
    """An OTel GenAI chat span whose response asks for ``tool`` (or answers in text); with
    ``content=False`` its messages are not on it (sent as log records, events mode)."""
    parts: list[dict[str, Any]] = [{"type": "text", "content": "thinking"}]
    if tool:
        parts.append({"type": "tool_call", "id": call_id, "name": tool, "arguments": {"q": "A-1042"}})
    finish = "tool_calls" if tool else "stop"
    output = [{"role": "assistant", "parts": parts, "finish_reason": finish}]
    attributes = [
        _kv("gen_ai.operation.name", "chat"),
        _kv("gen_ai.provider.name", "openai"),
        _kv("gen_ai.request.model", "gpt-4o-mini"),
        _kv("gen_ai.usage.input_tokens", 200),
        _kv("gen_ai.usage.output_tokens", 30),
        _kv("gen_ai.workflow.name", "support_agent"),
    ]
    if content:
        attributes.append(_kv("gen_ai.output.messages", json.dumps(output)))
    if response_id:
        attributes.append(_kv("gen_ai.response.id", response_id))
    return Span(
        span_id=bytes.fromhex(span_id),
        parent_span_id=bytes.fromhex(parent) if parent else b"",
        name="chat gpt-4o-mini",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start,
        end_time_unix_nano=end if end is not None else start + 1_000_000,
        attributes=attributes,
    )


def tool_span(span_id: str, start: int, tool: str) -> Span:
    """An OpenLLMetry tool span (it carries no tool-call id)."""
    return Span(
        span_id=bytes.fromhex(span_id),
        parent_span_id=bytes.fromhex(ROOT_ID),
        name=f"{tool}.tool",
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=start,
        end_time_unix_nano=start + 500_000,
        attributes=[
            _kv("traceloop.span.kind", "tool"),
            _kv("traceloop.entity.name", tool),
            _kv("gen_ai.tool.name", tool),
            _kv("traceloop.workflow.name", "support_agent"),
            _kv("traceloop.entity.input", json.dumps({"args": [], "kwargs": {"q": "A-1042"}})),
            _kv("traceloop.entity.output", "order A-1042 shipped"),
        ],
    )


def facts(trace_id: bytes, *spans: Span, scope: str = "opentelemetry.instrumentation.openai") -> list[SpanFacts]:
    request = ExportTraceServiceRequest()
    ss = request.resource_spans.add().scope_spans.add()
    ss.scope.name = scope
    for span in spans:
        span.trace_id = trace_id
    ss.spans.extend(spans)
    out = translate_request(request.resource_spans, Hasher())
    assert out.rejected == 0
    return out.facts


def new_run(trace_id: bytes) -> RunState:
    return RunState(str(uuid.UUID(bytes=trace_id)), "default-agent")


def kinds(events: list[RunEvent]) -> list[str]:
    return [e.kind for e in events]


def one_call(trace: bytes, requested: str, ran: str) -> tuple[RunState, list[RunEvent]]:
    """A new run, and the events of an LLM call asking for ``requested`` then a span of tool ``ran``."""
    state = new_run(trace)
    events = state.apply_spans(
        facts(
            trace,
            llm_span("1000000000000001", T0, requested, "call_1"),
            tool_span("2000000000000001", T0 + 2_000_000, ran),
        )
    )
    return state, events


def test_a_run_whose_calls_pair_keeps_no_pairing_queue() -> None:
    trace = uuid.uuid4().bytes
    state, events = one_call(trace, "lookup_order", "lookup_order")
    assert kinds(events) == [ev.LLM_CALLED, ev.LLM_RESPONDED, ev.TOOL_CALLED, ev.TOOL_RESPONDED]
    assert events[2].payload["tool_call_id"] == "call_1"  # the span answered the request
    assert state.requests_by_call_id == {"call_1": None}  # matched: only that is asked of it
    assert (state.pending, state.open_requests, state.open_tool_spans, state.open_tool_spans_any) == (None,) * 4
    assert (state.open_unnamed, state.open_tool_spans_by_call_id) == (None, None)
    # Nothing of the Dunetrace SDK, of restoring, of log content or of native SDK twins.
    assert (state.sdk, state.replay_emitted, state.replay_calls, state.log_stash, state.content_events) == (None,) * 5
    assert state.llm_by_parent is None and state.available_tools is None
    assert state.spans["2000000000000001"] is None and state.spans["1000000000000001"] is not None

    # A second request of the same tool, answered by a span that came first: paired all the same.
    events = state.apply_spans(facts(trace, tool_span("2000000000000002", T0 + 9_000_000, "lookup_order")))
    assert kinds(events) == [ev.TOOL_CALLED, ev.TOOL_RESPONDED] and state.open_tool_spans is not None
    events = state.apply_spans(facts(trace, llm_span("1000000000000002", T0 + 5_000_000, "lookup_order", "call_2")))
    assert kinds(events) == [ev.LLM_CALLED, ev.LLM_RESPONDED]  # no tool call of its own: the span answered it
    assert state.tool_calls == 2 and state.pending is None
    assert (state.open_tool_spans, state.open_tool_spans_any, state.open_requests) == (None, None, None)
    assert state.requests_by_call_id == {"call_1": None, "call_2": None}


def test_unanswered_requests_and_tool_spans_wait_and_a_stalled_run_counts_the_requests() -> None:
    state, _ = one_call(uuid.uuid4().bytes, "get_weather", "search_kb")
    assert state.open_requests is not None and [r.name for r in state.open_requests["get_weather"]] == ["get_weather"]
    assert state.pending is not None and len(state.pending) == 1
    assert state.open_tool_spans is not None and list(state.open_tool_spans) == ["search_kb"]
    closing = state.close_stalled()
    assert kinds(closing) == [ev.TOOL_CALLED] and closing[0].call_id == "req:1000000000000001:0"
    assert closing[0].payload["tool_name"] == "get_weather" and state.pending is None
    assert state.tool_calls == 2 and state.status == "stalled"


def test_the_index_of_llm_calls_by_parent_is_made_for_native_sdk_spans_only() -> None:
    trace = uuid.uuid4().bytes
    state = new_run(trace)
    outer = llm_span("1000000000000001", T0, end=T0 + 100_000_000)
    state.apply_spans(facts(trace, outer))
    assert state.llm_by_parent is None and state.llm_calls == 1
    # The Anthropic SDK's own span of the same call, inside the instrumentation's: one call.
    native = llm_span("3000000000000001", T0 + 10_000_000, end=T0 + 90_000_000)
    state.apply_spans(facts(trace, native, scope=ANTHROPIC_NATIVE_SCOPE))
    assert state.llm_calls == 1
    first = state.spans["1000000000000001"]
    assert state.llm_by_parent == {ROOT_ID: [first]}
    # From then on it is kept as calls come.
    state.apply_spans(facts(trace, llm_span("1000000000000002", T0 + 200_000_000)))
    assert state.llm_calls == 2
    assert state.llm_by_parent == {ROOT_ID: [first, state.spans["1000000000000002"]]}


def test_log_content_waits_for_its_span_and_the_same_requests_are_not_counted_twice() -> None:
    trace = uuid.uuid4().bytes
    state = new_run(trace)
    span_id = "1000000000000001"
    requests = (ToolRequest("call_1", "lookup_order", "sha256:" + "ab" * 32, 16),)
    content = LogContent(state.run_id, span_id, T0 + 1_000_000, None, OutputFeatures(None, 10, requests, "tool_calls"))
    events = state.apply_log_content(content)
    assert kinds(events) == [ev.LLM_CONTENT]
    assert state.log_stash is not None and list(state.log_stash) == [span_id]
    events = state.apply_spans(facts(trace, llm_span(span_id, T0, content=False)))
    assert kinds(events) == [ev.LLM_CALLED, ev.LLM_RESPONDED] and state.log_stash is None
    assert events[1].payload["tool_requests"][0]["call_id"] == "call_1"  # the stashed content's
    record = state.spans[span_id]
    assert record is not None and record.requests == 1
    # The same content again under another digest (a later record): its request is known already.
    again = LogContent(state.run_id, span_id, T0 + 2_000_000, None, OutputFeatures(None, 11, requests, "tool_calls"))
    assert kinds(state.apply_log_content(again)) == [ev.LLM_CONTENT]
    assert record.requests == 1 and state.pending is not None and len(state.pending) == 1
    assert kinds(state.close_stalled()) == [ev.TOOL_CALLED]


def test_names_many_runs_repeat_are_one_object() -> None:
    states = []
    for _ in range(2):
        trace = uuid.uuid4().bytes
        state = new_run(trace)
        state.apply_spans(facts(trace, llm_span("1000000000000001", T0, "get_weather", "call_1")))
        states.append(state)
    a, b = states
    assert a.agent_id == "support_agent" and a.agent_id is b.agent_id
    assert a.first_model == "gpt-4o-mini" and a.first_model is b.first_model
    assert a.open_requests is not None and b.open_requests is not None
    assert next(iter(a.open_requests)) is next(iter(b.open_requests))


def test_restoring_a_run_leaves_no_replay_state_behind() -> None:
    trace = uuid.uuid4().bytes
    state, stored = one_call(trace, "get_weather", "get_weather")
    restored = RunState.restore(state.row(), stored, "default-agent")
    assert (restored.replay_emitted, restored.replay_calls) == (None, None)
    assert restored.row() == state.row()
    # Re-delivered spans stay duplicates; the restored request is paired as before.
    again = facts(trace, llm_span("1000000000000001", T0, "get_weather", "call_1"))
    assert restored.apply_spans(again) == []
    assert restored.requests_by_call_id == {"call_1": None}


# The budget: the bench's open run (an LLM call asking for a tool, and that tool's span; no root
# yet) through assembly, the detectors' view and the policies' state. Measured at 3,287 bytes on
# CPython 3.11 (7,283 before collections were made on first use); the budget leaves room for a
# field or two, not for collections every run pays for whether it uses them or not.
OPEN_RUN_BUDGET_BYTES = 3_600


def test_an_open_run_stays_within_its_memory_budget() -> None:
    n = 400
    engine = DetectionEngine()
    requests = []
    for i in range(n):
        trace = uuid.uuid4().bytes
        tool = ("lookup_order", "get_weather", "search_kb")[i % 3]
        spans = (
            llm_span(f"{i + 1:016x}", T0, tool, f"call_{uuid.uuid4().hex[:24]}", f"chatcmpl-{uuid.uuid4().hex}"),
            tool_span(f"{i + 1 + 10**6:016x}", T0 + 2_000_000, tool),
        )
        requests.append((trace, spans))
    runs = []
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for trace, spans in requests:
            state, view, policy = (
                new_run(trace),
                RunView(str(uuid.UUID(bytes=trace)), "default-agent"),
                PolicyRunState(),
            )
            events = state.apply_spans(facts(trace, *spans))
            view.agent_id = state.agent_id or "default-agent"
            for event in events:
                signals = engine.process(view, [event], now_ns=T0)
                observe(policy, event, [s.failure_type for s in signals], DEFAULT_MODEL_PRICES)
            runs.append((state, view, policy))
        del events, signals
        gc.collect()
        per_run = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert all(state.tool_calls == 1 and view.tool_calls == 1 for state, view, _ in runs)
    assert per_run <= OPEN_RUN_BUDGET_BYTES, f"{per_run:.0f} bytes per open run"


def test_a_late_tool_span_stays_seen_across_a_restore() -> None:
    """A tool span that comes after its call was counted from the LLM's request (the run was
    closed first) stores only its tool.responded, under the request's call id. Restored from the
    store, the run must still know the span: re-delivered, it took it again (its tool.responded
    stored twice, its error counted twice: CI's soak after a kill, 2e75dfc)."""
    trace = uuid.uuid4().bytes
    state = new_run(trace)
    stored = state.apply_spans(facts(trace, llm_span("1000000000000001", T0, "lookup_order", "call_1")))
    stored += state.close_stalled()  # the request, counted as a call
    late = state.apply_spans(facts(trace, tool_span("2000000000000001", T0 + 2_000_000, "lookup_order")))
    assert kinds(late) == [ev.TOOL_RESPONDED]
    assert late[0].event_id == "2000000000000001:tool.responded" and late[0].call_id.startswith("req:")
    restored = RunState.restore(state.row(), stored + late, "default-agent")
    again = facts(trace, tool_span("2000000000000001", T0 + 2_000_000, "lookup_order"))
    assert restored.apply_spans(again) == []
    assert restored.row() == state.row()
