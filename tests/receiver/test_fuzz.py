"""Property-based fuzzing of the OTLP receivers with mutated real captures (issue 11).

Seeded and derandomised (the same cases every run), a few thousand in all. Each case is a real
capture (fresh trace ids) in which one span or log record has been mutated — an attribute's
value replaced by a hostile one (deep arrays and maps, huge or negative or non-finite numbers,
long or odd strings, bytes), a time, an id, a status or a name changed — sent next to an
untouched run. The properties, on both transports:

- the answer is one the OTLP specification names for a decodable request: HTTP 200 (partial
  success allowed) or 400, gRPC OK or INVALID_ARGUMENT — never 500 / UNKNOWN / INTERNAL;
- when accepted, the untouched run in the same request is stored in full;
- the daemon keeps serving.

Byte-level mutations (flips, truncations, insertions) of whole bodies must get 200 or 400.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from tests.sidecar import Sidecar, fixture_bytes, new_trace_id, to_any, with_new_trace_ids

GOOD = "openllmetry-openai-toolloop.pb"  # 4 LLM calls, 4 tool calls, completed
TARGETS = (
    "openllmetry-openai-toolcall.pb",
    "openinference-anthropic-toolcall.pb",
    "otelgenai-openai-toolloop.pb",
    "openllmetry-legacy-openai-errors.pb",
)
LOGS = "openllmetry-events-openai-toolcall.logs.pb"
# Keys the translator reads (and some it does not), so mutations land where they matter.
KEYS = (
    "gen_ai.operation.name",
    "openinference.span.kind",
    "traceloop.span.kind",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "gen_ai.response.finish_reasons",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.request.model",
    "gen_ai.response.id",
    "gen_ai.agent.name",
    "gen_ai.tool.name",
    "gen_ai.tool.call.id",
    "gen_ai.tool.call.arguments",
    "gen_ai.response.tool_calls",
    "traceloop.entity.input",
    "traceloop.workflow.name",
    "input.value",
    "llm.input_messages.0.message.content",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments",
    "retrieval.documents.0.document.score",
    "gen_ai.prompt.0.content",
    "llm.request.functions.0.name",
    "langfuse.observation.prompt.version",
    "error.type",
    "unrelated.key",
)
CYCLES = 2000  # cases per property: a few thousand across the module, within a minute or so

scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=64),
    st.sampled_from(["", "²", "9" * 5000, "inf", "nan", "-1", "chat", "LLM", "tool", "[" * 3000, "{" * 3000]),
    st.sampled_from(['[{"role":"assistant","parts":5}]', '{"parts":[{"type":"tool_call","arguments":[[[[]]]]}]}']),
    st.booleans(),
    st.binary(max_size=32),
)


def _deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


hostile = st.one_of(
    scalars,
    st.lists(scalars, max_size=5),
    st.dictionaries(st.text(max_size=8), scalars, max_size=5),
    st.integers(min_value=5, max_value=40).map(_deep),  # protobuf itself refuses deeper (400)
)


@st.composite
def span_mutation(draw: st.DrawFn) -> tuple[str, Any, Any]:
    kind = draw(st.sampled_from(["attribute", "attribute", "attribute", "time", "ids", "status", "name", "event"]))
    if kind == "attribute":
        return kind, draw(st.sampled_from(KEYS)), draw(hostile)
    if kind == "time":
        return kind, draw(st.integers(min_value=0, max_value=2**64 - 1)), draw(st.integers(0, 2**64 - 1))
    if kind == "ids":
        return kind, draw(st.binary(max_size=20)), draw(st.binary(max_size=10))
    if kind == "status":
        return kind, draw(st.integers(min_value=0, max_value=2**31 - 1)), draw(st.text(max_size=20))
    if kind == "name":
        return kind, draw(st.text(max_size=200)), None
    return kind, draw(st.sampled_from(["exception", "gen_ai.choice", "gen_ai.content.prompt"])), draw(hostile)


def mutated_request(target: str, mutation: tuple[str, Any, Any], index: int) -> tuple[bytes, str]:
    """An untouched run and a mutated capture in one request; returns (body, untouched run id)."""
    good_body, good_ids = with_new_trace_ids(fixture_bytes(GOOD))
    bad_body, _ = with_new_trace_ids(fixture_bytes(target))
    request = ExportTraceServiceRequest.FromString(good_body)
    bad = ExportTraceServiceRequest.FromString(bad_body)
    spans = [s for rs in bad.resource_spans for ss in rs.scope_spans for s in ss.spans]
    span = spans[index % len(spans)]
    kind, first, second = mutation
    if kind == "attribute":
        for kv in span.attributes:
            if kv.key == first:
                kv.value.CopyFrom(to_any(second))
                break
        else:
            span.attributes.append(KeyValue(key=first, value=to_any(second)))
    elif kind == "time":
        span.start_time_unix_nano, span.end_time_unix_nano = first, second
    elif kind == "ids":
        span.span_id, span.parent_span_id = first, second
    elif kind == "status":
        span.status.code, span.status.message = first, second
    elif kind == "name":
        span.name = first
    else:
        event = span.events.add()
        event.name = first
        event.attributes.append(KeyValue(key="gen_ai.prompt", value=to_any(second)))
        event.attributes.append(KeyValue(key="exception.message", value=to_any(second)))
    request.resource_spans.extend(bad.resource_spans)
    [good_run] = good_ids.values()
    return request.SerializeToString(), good_run


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    sidecar = Sidecar(tmp_path_factory.mktemp("fuzz")).start()
    yield sidecar
    sidecar.close()


FUZZ = settings(
    max_examples=CYCLES,
    derandomize=True,  # seeded: the same cases every run
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(target=st.sampled_from(TARGETS), mutation=span_mutation(), index=st.integers(0, 50))
def test_mutated_spans_over_http(daemon: Sidecar, target: str, mutation: tuple[str, Any, Any], index: int) -> None:
    body, good_run = mutated_request(target, mutation, index)
    result = daemon.post_otlp(body)
    assert result.status in (200, 400), (mutation, result.status, result.body[:200])
    if result.status == 200:
        run = daemon.run(good_run)
        assert (run["llm_calls"], run["tool_calls"], run["status"]) == (4, 4, "completed")


@settings(FUZZ, max_examples=CYCLES // 4)
@given(target=st.sampled_from(TARGETS), mutation=span_mutation(), index=st.integers(0, 50))
def test_mutated_spans_over_grpc(daemon: Sidecar, target: str, mutation: tuple[str, Any, Any], index: int) -> None:
    body, good_run = mutated_request(target, mutation, index)
    try:
        daemon.grpc_export(body)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (mutation, exc.code(), exc.details())
        return
    run = daemon.run(good_run)
    assert (run["llm_calls"], run["tool_calls"], run["status"]) == (4, 4, "completed")


@settings(FUZZ, max_examples=CYCLES // 4)
@given(key=st.sampled_from(["content", "message", "tool_calls", "finish_reason", "id"]), value=hostile)
def test_mutated_log_records(daemon: Sidecar, key: str, value: Any) -> None:
    logs = ExportLogsServiceRequest.FromString(fixture_bytes(LOGS))
    trace_id = new_trace_id()
    records = [r for rl in logs.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    for record in records:
        record.trace_id = trace_id
    records[len(records) // 2].body.kvlist_value.values.append(KeyValue(key=key, value=to_any(value)))
    result = daemon.post_otlp(logs.SerializeToString(), path="/v1/logs")
    assert result.status == 200, (key, value, result.status, result.body[:200])
    assert daemon.api(f"/v1/runs/{uuid.UUID(bytes=trace_id)}").status == 200


@settings(FUZZ, max_examples=CYCLES // 4)
@given(
    target=st.sampled_from((GOOD, *TARGETS)),
    cuts=st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=8)), min_size=1, max_size=4),
    truncate=st.one_of(st.none(), st.integers(0, 10_000)),
    json=st.booleans(),
)
def test_mutated_bytes(
    daemon: Sidecar, target: str, cuts: list[tuple[int, bytes]], truncate: int | None, json: bool
) -> None:
    body = bytearray(fixture_bytes(target.replace(".pb", ".json") if json else target))
    for position, insert in cuts:
        at = position % max(len(body), 1)
        body[at : at + len(insert)] = insert
    if truncate is not None:
        del body[truncate % max(len(body), 1) :]
    content_type = "application/json" if json else "application/x-protobuf"
    result = daemon.post_otlp(bytes(body), content_type=content_type)
    assert result.status in (200, 400), (result.status, result.body[:200])
    assert daemon.api("/healthz").status == 200
