"""One bad span never costs anyone else their data (issue 11, findings 1 and 2).

Each hostile value rides in one span of a request that also carries a whole good run; the
request gets the OTLP answer the specification names (200 / OK, with partial success when a
span is refused), the good run is stored in full, and the daemon keeps serving. On both
transports. And in the store: a batch whose values DuckDB refuses fails alone, the other
clients' batches of its group commit are committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from detectors.events import RunEvent, RunRow
from store.duckdb_store import BatchRejected, DuckStore, WriteBatch
from tests.sidecar import Sidecar, fixture_bytes, new_trace_id, to_any, with_new_trace_ids

GOOD = "openllmetry-openai-toolloop.pb"  # one run: 4 LLM calls, 4 tool calls, completed
LLM_SPAN_NAME = "openai.chat"


def _set(span: trace_pb2.Span, key: str, raw: Any) -> None:
    for kv in span.attributes:
        if kv.key == key:
            kv.value.CopyFrom(to_any(raw))
            return
    span.attributes.append(KeyValue(key=key, value=to_any(raw)))


def good_and_bad(mutate: Callable[[trace_pb2.Span], None]) -> tuple[bytes, str, str]:
    """A request with one good run and, in another trace, one LLM span mutated by ``mutate``."""
    body, mapping = with_new_trace_ids(fixture_bytes(GOOD))
    [good_run] = mapping.values()
    request = ExportTraceServiceRequest.FromString(body)
    template = next(
        s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans if s.name == LLM_SPAN_NAME
    )
    bad = request.resource_spans[0].scope_spans[0].spans.add()
    bad.CopyFrom(template)
    bad.trace_id = new_trace_id()
    bad.parent_span_id = b""
    mutate(bad)
    import uuid

    return request.SerializeToString(), good_run, str(uuid.UUID(bytes=bad.trace_id))


def attribute(key: str, raw: Any) -> Callable[[trace_pb2.Span], None]:
    return lambda span: _set(span, key, raw)


def both(*mutations: Callable[[trace_pb2.Span], None]) -> Callable[[trace_pb2.Span], None]:
    def apply(span: trace_pb2.Span) -> None:
        for mutation in mutations:
            mutation(span)

    return apply


def _start_at(ns: int) -> Callable[[trace_pb2.Span], None]:
    def apply(span: trace_pb2.Span) -> None:
        span.start_time_unix_nano = ns
        span.end_time_unix_nano = ns

    return apply


DEEP = "[" * 5000 + "]" * 5000
HOSTILE: dict[str, Callable[[trace_pb2.Span], None]] = {
    "start time 2^64-1": _start_at(2**64 - 1),
    "start time 2^63": _start_at(2**63),
    "tokens 1e300": attribute("gen_ai.usage.input_tokens", 1e300),
    "tokens inf": attribute("gen_ai.usage.input_tokens", float("inf")),
    "tokens nan": attribute("gen_ai.usage.output_tokens", float("nan")),
    "tokens 2^63-1": attribute("gen_ai.usage.input_tokens", 2**63 - 1),
    "tokens negative": attribute("gen_ai.usage.input_tokens", -5),
    "tokens superscript two": attribute("gen_ai.usage.input_tokens", "²"),
    "tokens 5000 digits": attribute("gen_ai.usage.input_tokens", "9" * 5000),
    "tokens 'inf' text": attribute("gen_ai.usage.output_tokens", "inf"),
    "operation as array": attribute("gen_ai.operation.name", ["chat", "execute_tool"]),
    "openinference kind as array": both(
        attribute("gen_ai.operation.name", ""), attribute("openinference.span.kind", ["LLM"])
    ),
    "traceloop kind as number": both(attribute("gen_ai.operation.name", ""), attribute("traceloop.span.kind", 7)),
    "messages nested 5000 deep": attribute("gen_ai.input.messages", DEEP),
    "output nested 5000 deep": attribute("gen_ai.output.messages", DEEP),
    "parts is a number": attribute("gen_ai.output.messages", json.dumps([{"role": "assistant", "parts": 5}])),
    "tool call arguments nested": attribute(
        "gen_ai.output.messages",
        '[{"role":"assistant","parts":[{"type":"tool_call","name":"t","arguments":' + DEEP + "}]}]",
    ),
    "tool definitions nested": attribute("gen_ai.tool.definitions", DEEP),
    "finish reasons as numbers": attribute("gen_ai.response.finish_reasons", [1, 2]),
    "model as array": attribute("gen_ai.request.model", ["a", "b"]),
    "response id as number": attribute("gen_ai.response.id", 12),
    "two LLM spans of 2^63-1 tokens": attribute("gen_ai.usage.input_tokens", 2**63 - 1),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_value_costs_nobody_else_over_http(sidecar: Sidecar, case: str) -> None:
    body, good_run, bad_run = good_and_bad(HOSTILE[case])
    result = sidecar.post_otlp(body)
    assert result.status == 200, (case, result.status, result.body[:200])
    ExportTraceServiceResponse.FromString(result.body)  # a protobuf answer, partial success or none
    run = sidecar.run(good_run)
    assert (run["status"], run["llm_calls"], run["tool_calls"]) == ("completed", 4, 4), case
    # The bad span's run is usable afterwards: a later span of it is accepted.
    again, _, _ = good_and_bad(HOSTILE[case])
    assert sidecar.post_otlp(again).status == 200
    assert sidecar.api("/healthz").status == 200
    assert bad_run  # its fate (clamped or refused) is the partial-success answer's business


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_value_costs_nobody_else_over_grpc(sidecar: Sidecar, case: str) -> None:
    body, good_run, _ = good_and_bad(HOSTILE[case])
    try:
        answer = sidecar.grpc_export(body)
    except grpc.RpcError as exc:  # pragma: no cover - the failure being tested
        raise AssertionError(f"{case}: {exc.code()} {exc.details()}") from None
    ExportTraceServiceResponse.FromString(answer)
    run = sidecar.run(good_run)
    assert (run["status"], run["llm_calls"], run["tool_calls"]) == ("completed", 4, 4), case


def test_numbers_out_of_range_are_dropped_not_stored(sidecar: Sidecar) -> None:
    body, _, bad_run = good_and_bad(both(attribute("gen_ai.usage.input_tokens", 1e300), _start_at(2**64 - 1)))
    assert sidecar.post_otlp(body).status == 200
    run = sidecar.run(bad_run)
    assert run["prompt_tokens"] == 0  # an absurd count is no count
    [called] = [e for e in run["events"] if e["event_type"] == "llm.called"]
    assert "prompt_tokens" not in called["payload"]
    assert called["timestamp"].startswith("2262-04-11")  # clamped to the largest time the store holds


def test_hostile_log_record_bodies_cost_nobody_else(sidecar: Sidecar) -> None:
    logs = ExportLogsServiceRequest.FromString(fixture_bytes("openllmetry-events-openai-toolcall.logs.pb"))
    trace_id = new_trace_id()
    records = [r for rl in logs.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    for record in records:
        record.trace_id = trace_id
    bad = records[0].__class__()
    bad.CopyFrom(next(r for r in records if r.event_name == "gen_ai.choice"))
    bad.body.kvlist_value.values.append(KeyValue(key="tool_calls", value=to_any(["x"])))
    bad.body.kvlist_value.values.append(
        KeyValue(key="message", value=AnyValue(string_value=DEEP)),
    )
    logs.resource_logs[0].scope_logs[0].log_records.append(bad)
    result = sidecar.post_otlp(logs.SerializeToString(), path="/v1/logs")
    assert result.status == 200, result.body[:200]
    import uuid

    events = sidecar.run(str(uuid.UUID(bytes=trace_id)))["events"]
    assert sum(e["event_type"] == "llm.content" for e in events) >= 4


def test_an_otlp_json_body_nested_2000_deep_is_a_400(sidecar: Sidecar) -> None:
    body = ('{"resourceSpans":' + "[" * 2000 + "]" * 2000 + "}").encode()
    result = sidecar.post_otlp(body, content_type="application/json")
    assert result.status == 400, result.body[:200]
    assert b"Traceback" not in result.body and b"RecursionError" not in result.body


# --- the store: a poisoning batch fails alone ---------------------------------------------------


def _batch(run_id: str, ts_ns: int) -> WriteBatch:
    event = RunEvent(run_id, f"{run_id}:e", "llm.called", ts_ns, "c1", {"model": "m"})
    row = RunRow(
        run_id=run_id,
        agent_id="a",
        service_name=None,
        status="running",
        started_ns=min(ts_ns, 2**63 - 1),
        ended_ns=None,
        last_event_ns=min(ts_ns, 2**63 - 1),
        step_count=1,
        llm_calls=1,
        tool_calls=0,
        retrievals=0,
        errors=0,
        prompt_tokens=0,
        completion_tokens=0,
        exit_reason=None,
    )
    return WriteBatch(events=[event], runs=[row])


def test_a_batch_the_store_refuses_fails_alone_in_its_group(tmp_path: Path) -> None:
    import uuid

    store = DuckStore(str(tmp_path / "store.duckdb"))
    store.open()
    try:
        futures: list[tuple[str, Future[None]]] = []
        for index in range(200):  # submitted faster than one commit: they share group commits
            run_id = str(uuid.uuid4())
            ts = 2**64 if index == 100 else 1_700_000_000_000_000_000 + index  # 2^64: no BIGINT holds it
            futures.append((run_id, store.submit(_batch(run_id, ts))))
        outcomes = []
        for run_id, future in futures:
            try:
                future.result(timeout=30)
                outcomes.append(("ok", run_id))
            except BatchRejected:
                outcomes.append(("rejected", run_id))
        assert [o for o, _ in outcomes].count("rejected") == 1
        assert outcomes[100][0] == "rejected"
        stored = {row.run_id for row in store.get_runs([r for _, r in outcomes])}
        assert stored == {run_id for outcome, run_id in outcomes if outcome == "ok"}
        assert len(stored) == 199
    finally:
        store.close()


def test_names_are_bounded_where_they_enter(sidecar: Sidecar) -> None:
    """A megabyte tool, model or agent name is kept as its first 256 characters and a marker."""
    huge = "x" * 1_000_000

    def mutate(span: trace_pb2.Span) -> None:
        _set(span, "gen_ai.request.model", huge)
        _set(span, "gen_ai.agent.name", huge)
        _set(
            span,
            "gen_ai.output.messages",
            '[{"role":"assistant","parts":[{"type":"tool_call","name":"' + huge + '"}]}]',
        )

    body, _, bad_run = good_and_bad(mutate)
    assert sidecar.post_otlp(body).status == 200
    run = sidecar.api(f"/v1/runs/{bad_run}")
    assert run.status == 200 and len(run.body) < 20_000, len(run.body)
    answer = run.json()
    assert answer["agent_id"] == "x" * 256 + "…[truncated]"
    [called] = [e for e in answer["events"] if e["event_type"] == "llm.called"]
    assert called["payload"]["model"] == "x" * 256 + "…[truncated]"
