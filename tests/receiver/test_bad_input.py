"""Bad, odd and hostile input on both OTLP transports gets the answer the OTLP specification
gives it (../shared/spec/otlp.md §2b, §3), and the daemon keeps serving afterwards.

Every case talks to a real daemon over a real socket. Most use the shared session daemon with
fresh trace ids; the size-limit cases use a daemon of their own with small limits
(100000 bytes on HTTP after decompression and on gRPC). The end of the file drives the real
OpenTelemetry SDK exporters (gRPC and HTTP) with a small agent trace.

Expected numbers come from the captures (tests/testdata/otlp/README.md): the toolloop run has
10 spans, 4 LLM calls and 4 tool calls; the events-mode toolcall run has 14 gen_ai log records
on 5 spans, and its traces make 4 LLM calls and 1 tool call.
"""

from __future__ import annotations

import base64
import copy
import json
import socket
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

from tests.otel_sdk import RecordingExporter
from tests.sidecar import HttpResult, Sidecar, event_kinds, fixture_bytes, http, new_trace_id, with_new_trace_ids

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"

TOOLLOOP = "openllmetry-openai-toolloop"  # one trace, 10 spans: 4 LLM calls, 4 tool calls
TOOLLOOP_SPANS = 10
LIMIT = 100_000  # bytes, both transports, on the `limited` daemon
GARBAGE = b"this is not a protobuf message \xff\xff\xff\xff\x00\x01"
RSS_CEILING_KB = 500 * 1024


# --- helpers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """A daemon of its own with small size limits (the shared one keeps the defaults)."""
    env = {"DUNETRACE_MAX_HTTP_BODY_BYTES": str(LIMIT), "DUNETRACE_MAX_GRPC_MESSAGE_BYTES": str(LIMIT)}
    daemon = Sidecar(tmp_path_factory.mktemp("limited-sidecar"), env=env).start()
    yield daemon
    daemon.close()


def fresh_toolloop() -> tuple[bytes, str]:
    """The toolloop capture as a run nobody has sent yet: (protobuf body, run id)."""
    body, mapping = with_new_trace_ids(fixture_bytes(TOOLLOOP + ".pb"))
    [run_id] = mapping.values()
    return body, run_id


def fresh_toolloop_json() -> tuple[dict[str, Any], bytes]:
    """The captured OTLP/JSON toolloop request with a new trace id: (document, trace id bytes)."""
    document = json.loads(fixture_bytes(TOOLLOOP + ".json"))
    trace_id = new_trace_id()
    for span in spans_of(document):
        span["traceId"] = trace_id.hex()
    return document, trace_id


def spans_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [span for rs in document["resourceSpans"] for ss in rs["scopeSpans"] for span in ss["spans"]]


def run_id_of(trace_id: bytes) -> str:
    return str(uuid.UUID(bytes=trace_id))


def assert_toolloop_run(run: dict[str, Any]) -> None:
    assert run["agent_id"] == "support_agent"
    assert run["status"] == "completed"
    assert run["llm_calls"] == 4
    assert run["tool_calls"] == 4
    assert run["step_count"] == 8


def assert_still_serves(daemon: Sidecar) -> None:
    """After whatever came before, a valid export is stored and the daemon is healthy."""
    assert daemon.process is not None and daemon.process.poll() is None, "the daemon died"
    body, run_id = fresh_toolloop()
    result = daemon.post_otlp(body)
    assert result.status == 200, result.body
    assert_toolloop_run(daemon.run(run_id))  # 200 means stored: no waiting
    assert daemon.api("/healthz").status == 200


def status_body(result: HttpResult, content_type: str) -> status_pb2.Status:
    """The google.rpc.Status a failure carries, in the request's encoding."""
    assert result.headers["Content-Type"].startswith(content_type), result.headers
    if content_type == JSON:
        return json_format.Parse(result.body, status_pb2.Status())  # strict: a Status and nothing else
    return status_pb2.Status.FromString(result.body)


def trace_response(result: HttpResult) -> ExportTraceServiceResponse:
    assert result.status == 200, result.body
    assert result.headers["Content-Type"].startswith(PROTOBUF)
    return ExportTraceServiceResponse.FromString(result.body)


def grpc_call(daemon: Sidecar, body: bytes, method: str, compression: grpc.Compression | None = None) -> bytes:
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        return call(body, timeout=30, compression=compression)


def grpc_error(daemon: Sidecar, body: bytes, method: str = f"/{TRACE_SERVICE}/Export", **kw: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        grpc_call(daemon, body, method, **kw)
    return caught.value


def gzip_of_zeros(mebibytes: int) -> bytes:
    """A valid gzip stream of ``mebibytes`` MiB of zeros, built without compressing it all:
    a full flush resets the deflate window, so every 1 MiB block compresses to the same bytes."""
    chunk = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    tail = deflate.flush()
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(chunk, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", crc, (mebibytes << 20) & 0xFFFFFFFF)
    return header + block * mebibytes + tail + trailer


def proc_status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


# --- OTLP/HTTP: undecodable bodies --------------------------------------------------------


def test_garbage_protobuf_is_400_with_status_body(sidecar: Sidecar) -> None:
    result = sidecar.post_otlp(GARBAGE)
    assert result.status == 400
    status = status_body(result, PROTOBUF)
    assert status.message != ""
    assert "Retry-After" not in result.headers  # bad data is final
    assert_still_serves(sidecar)


def test_truncated_protobuf_is_400(sidecar: Sidecar) -> None:
    body, run_id = fresh_toolloop()
    result = sidecar.post_otlp(body[: len(body) // 2])
    assert result.status == 400
    assert status_body(result, PROTOBUF).message != ""
    assert sidecar.api(f"/v1/runs/{run_id}").status == 404  # nothing of the half was kept
    assert_still_serves(sidecar)


def test_invalid_json_is_400_with_json_status_body(sidecar: Sidecar) -> None:
    result = sidecar.post_otlp(b'{"resourceSpans": [{"scopeSpans": [', content_type=JSON)
    assert result.status == 400
    assert status_body(result, JSON).message != ""
    assert_still_serves(sidecar)


# --- OTLP/JSON mapping ---------------------------------------------------------------------


def test_json_with_base64_ids_rejects_every_span(sidecar: Sidecar) -> None:
    """OTLP/JSON ids are hex; base64 ids (stock proto3 JSON) are unusable: partial success."""
    document, trace_id = fresh_toolloop_json()
    for span in spans_of(document):
        span["traceId"] = base64.b64encode(trace_id).decode()
        span["spanId"] = base64.b64encode(bytes.fromhex(span["spanId"])).decode()
        if span.get("parentSpanId"):
            span["parentSpanId"] = base64.b64encode(bytes.fromhex(span["parentSpanId"])).decode()
    result = sidecar.post_otlp(json.dumps(document).encode(), content_type=JSON)
    assert result.status == 200, result.body
    assert result.headers["Content-Type"].startswith(JSON)
    partial = result.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == TOOLLOOP_SPANS  # int64 is a decimal string in JSON
    assert partial["errorMessage"] != ""
    assert sidecar.api(f"/v1/runs/{run_id_of(trace_id)}").status == 404
    assert_still_serves(sidecar)


def test_json_unknown_fields_are_ignored(sidecar: Sidecar) -> None:
    document, trace_id = fresh_toolloop_json()
    document["someFutureTopLevelField"] = {"nested": [1, 2, 3]}
    resource_spans = document["resourceSpans"][0]
    resource_spans["resource"]["someFutureResourceField"] = 7
    resource_spans["scopeSpans"][0]["unknown_snake_case_field"] = "ignored"
    for span in spans_of(document):
        span["someFutureSpanField"] = {"a": "b"}
        span["attributes"][0]["value"]["someFutureValueKind"] = True
    result = sidecar.post_otlp(json.dumps(document).encode(), content_type=JSON)
    assert result.status == 200, result.body
    assert result.json() == {}  # full success: partialSuccess unset
    assert_toolloop_run(sidecar.run(run_id_of(trace_id)))
    assert_still_serves(sidecar)


def test_json_snake_case_spelling_of_id_fields_is_ignored(sidecar: Sidecar) -> None:
    """Keys are lowerCamelCase; "original field names are not valid" and unknown names MUST be
    ignored. A sender that also writes `trace_id` / `span_id` (same hex value) must therefore
    get exactly what the camelCase keys say. (Read as the proto field instead, the value is
    still hex, so either reading gives the same ids and full success.)"""
    document, trace_id = fresh_toolloop_json()
    for span in spans_of(document):
        span["trace_id"] = span["traceId"]
        span["span_id"] = span["spanId"]
    result = sidecar.post_otlp(json.dumps(document).encode(), content_type=JSON)
    assert result.status == 200, result.body
    # protobuf's JSON parser would read `trace_id`/`span_id` as the proto fields, override the
    # camelCase ids and decode the hex as base64 (24/12-byte ids), rejecting every span.
    assert result.json() == {}
    assert_toolloop_run(sidecar.run(run_id_of(trace_id)))
    assert_still_serves(sidecar)


# --- OTLP/HTTP: request shape -----------------------------------------------------------------


def test_wrong_content_type_is_415(sidecar: Sidecar) -> None:
    body, run_id = fresh_toolloop()
    result = sidecar.post_otlp(body, content_type="text/plain")
    assert result.status == 415
    assert status_body(result, JSON).message != ""
    assert sidecar.api(f"/v1/runs/{run_id}").status == 404
    assert_still_serves(sidecar)


@pytest.mark.parametrize("path", ["/v1/traces", "/v1/logs", "/v1/metrics"])
def test_get_is_405_with_allow_post(sidecar: Sidecar, path: str) -> None:
    result = http("GET", sidecar.http_url + path)
    assert result.status == 405
    assert result.headers["Allow"] == "POST"
    assert_still_serves(sidecar)


def test_body_over_limit_is_413(limited: Sidecar) -> None:
    body = b"\x0a" + b"x" * (2 * LIMIT)  # ~200 KB; its content never matters
    result = limited.post_otlp(body)
    assert result.status == 413
    assert status_body(result, PROTOBUF).message != ""
    assert "Retry-After" not in result.headers  # too large is final
    assert_still_serves(limited)


def test_gzip_bomb_is_413_quickly_without_memory_blowup(limited: Sidecar) -> None:
    """512 MiB of zeros in ~0.5 MB of gzip, against a 100000-byte limit measured after
    decompression: refused early, never inflated in memory."""
    assert limited.process is not None
    pid = limited.process.pid
    bomb = gzip_of_zeros(512)
    assert len(bomb) < 1_000_000
    started = time.monotonic()
    result = limited.post_otlp(bomb, extra_headers={"Content-Encoding": "gzip"})
    elapsed = time.monotonic() - started
    assert result.status == 413
    assert status_body(result, PROTOBUF).message != ""
    assert elapsed < 5.0
    assert_still_serves(limited)  # returns once the daemon is done with the bomb, whatever it did
    assert proc_status_kb(pid, "VmHWM") < RSS_CEILING_KB  # peak resident set since start
    assert proc_status_kb(pid, "VmRSS") < RSS_CEILING_KB


def test_refused_body_is_not_read_on(limited: Sidecar) -> None:
    """After refusing a gzip bomb the daemon closes the connection instead of reading (and
    inflating) the rest of the body on its event loop, which aiohttp's default "lingering close"
    does for up to 10 s and which stalled every listener for seconds. The client still pushing
    the body must see the connection close well inside those 10 s."""
    bomb = gzip_of_zeros(2048)  # ~2 MB on the wire, 2 GiB inflated
    host, port = limited.addresses["otlp_http"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"POST /v1/traces HTTP/1.1\r\nHost: {host}\r\nContent-Type: {PROTOBUF}\r\n"
            f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n"
        )
        sock.sendall(head.encode())
        sock.settimeout(8.0)  # under aiohttp's 10 s lingering time: a lingering server times us out
        sent = 0
        closed_early = False
        try:
            while sent < len(bomb):
                sent += sock.send(bomb[sent : sent + 65536])
        except (BrokenPipeError, ConnectionResetError):
            closed_early = True  # the server stopped reading and closed: what we want
        except TimeoutError:
            pytest.fail("the server neither read the body nor closed the connection")
        response = b""
        try:
            while chunk := sock.recv(65536):
                response += chunk
        except ConnectionResetError:
            closed_early = True
        except TimeoutError:
            pytest.fail(f"the connection stayed open after the answer (sent {sent} of {len(bomb)} bytes)")
    assert closed_early or response.startswith(b"HTTP/1.1 413"), response[:200]
    assert_still_serves(limited)


def broken_gzip_streams() -> dict[str, bytes]:
    body, _ = fresh_toolloop()
    good = zlib.compress(body, wbits=31)
    bad_crc = bytearray(good)
    bad_crc[-8] ^= 0xFF  # the CRC32 of the trailer
    return {
        "not-gzip-after-the-magic": b"\x1f\x8b\x08\x00" + GARBAGE * 4,
        "not-gzip-at-all": body,
        "crc-mismatch": bytes(bad_crc),
    }


@pytest.mark.parametrize("name", ["not-gzip-after-the-magic", "not-gzip-at-all", "crc-mismatch"])
def test_broken_gzip_stream_is_400(sidecar: Sidecar, name: str) -> None:
    result = sidecar.post_otlp(broken_gzip_streams()[name], extra_headers={"Content-Encoding": "gzip"})
    assert result.status == 400
    assert status_body(result, PROTOBUF).message != ""
    assert_still_serves(sidecar)


def test_empty_request_succeeds(sidecar: Sidecar) -> None:
    result = sidecar.post_otlp(b"")
    assert not trace_response(result).HasField("partial_success")
    result = sidecar.post_otlp(b"{}", content_type=JSON)
    assert result.status == 200, result.body
    assert result.json() == {}
    assert_still_serves(sidecar)


# --- span-level problems: partial success ----------------------------------------------------


def test_bad_ids_mixed_with_good_spans_is_partial_success(sidecar: Sidecar) -> None:
    body, run_id = fresh_toolloop()
    request = ExportTraceServiceRequest.FromString(body)
    spans = request.resource_spans[0].scope_spans[0].spans
    [good_trace_id] = {span.trace_id for span in spans}
    llm = next(
        s
        for s in spans
        if any(a.key == "gen_ai.operation.name" and a.value.string_value == "chat" for a in s.attributes)
    )
    bad_ids = [  # (trace_id, span_id): each copy of an LLM span would be a 5th, 6th… call if kept
        (b"", b"\x01" * 8),
        (bytes(16), b"\x02" * 8),
        (good_trace_id, b""),
        (good_trace_id, bytes(8)),
    ]
    for trace_id, span_id in bad_ids:
        bad = copy.deepcopy(llm)
        kept = [a for a in bad.attributes if a.key != "gen_ai.response.id"]
        bad.ClearField("attributes")
        bad.attributes.extend(kept)
        bad.trace_id, bad.span_id = trace_id, span_id
        spans.append(bad)
    response = trace_response(sidecar.post_otlp(request.SerializeToString()))
    assert response.partial_success.rejected_spans == 4
    assert response.partial_success.error_message != ""
    assert_toolloop_run(sidecar.run(run_id))  # the 10 good spans, and nothing of the 4 bad ones
    assert_still_serves(sidecar)


def test_same_request_twice_does_not_duplicate_events(sidecar: Sidecar) -> None:
    body, run_id = fresh_toolloop()
    assert not trace_response(sidecar.post_otlp(body)).HasField("partial_success")
    first = sidecar.run(run_id)
    assert not trace_response(sidecar.post_otlp(body)).HasField("partial_success")
    second = sidecar.run(run_id)
    grpc_call(sidecar, body, f"/{TRACE_SERVICE}/Export")  # a retry over the other transport
    third = sidecar.run(run_id)
    assert len(first["events"]) == 18  # run.started, 4 × (llm.called, llm.responded, tool.called, tool.responded), end
    assert second["events"] == first["events"]
    assert third["events"] == first["events"]
    assert_toolloop_run(third)
    assert_still_serves(sidecar)


# --- logs and metrics -------------------------------------------------------------------------


def metrics_request() -> bytes:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    kv = resource.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "bad-input-tests"
    scope = resource.scope_metrics.add()
    scope.scope.name = "opentelemetry.instrumentation.openai"
    metric = scope.metrics.add()
    metric.name, metric.unit = "gen_ai.client.token.usage", "{token}"
    metric.sum.aggregation_temporality = 2  # cumulative
    metric.sum.is_monotonic = True
    point = metric.sum.data_points.add()
    point.as_int, point.time_unix_nano = 42, time.time_ns()
    return request.SerializeToString()


SIGNAL_BODIES: dict[str, tuple[str, bytes, str, type[Message]]] = {
    "logs-empty-protobuf": ("/v1/logs", b"", PROTOBUF, ExportLogsServiceResponse),
    "logs-empty-json": ("/v1/logs", b"{}", JSON, ExportLogsServiceResponse),
    "metrics-empty-protobuf": ("/v1/metrics", b"", PROTOBUF, ExportMetricsServiceResponse),
    "metrics-empty-json": ("/v1/metrics", b"{}", JSON, ExportMetricsServiceResponse),
    "metrics-token-usage-sum": ("/v1/metrics", metrics_request(), PROTOBUF, ExportMetricsServiceResponse),
}


@pytest.mark.parametrize("name", sorted(SIGNAL_BODIES))
def test_logs_and_metrics_are_accepted(sidecar: Sidecar, name: str) -> None:
    path, body, content_type, response_type = SIGNAL_BODIES[name]
    result = sidecar.post_otlp(body, path=path, content_type=content_type)
    assert result.status == 200, result.body
    assert result.headers["Content-Type"].startswith(content_type)
    if content_type == JSON:
        assert result.json() == {}
    else:
        assert not response_type.FromString(result.body).HasField("partial_success")
    assert_still_serves(sidecar)


def test_real_logs_request_then_its_traces(sidecar: Sidecar) -> None:
    """Events mode: content arrives as 14 gen_ai log records on 5 LLM spans, then the spans."""
    trace_id = new_trace_id()
    logs = ExportLogsServiceRequest.FromString(fixture_bytes("openllmetry-events-openai-toolcall.logs.pb"))
    for rl in logs.resource_logs:
        for sl in rl.scope_logs:
            for record in sl.log_records:
                record.trace_id = trace_id
    traces = ExportTraceServiceRequest.FromString(fixture_bytes("openllmetry-events-openai-toolcall.traces.pb"))
    for rs in traces.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                span.trace_id = trace_id
    run_id = run_id_of(trace_id)

    result = sidecar.post_otlp(logs.SerializeToString(), path="/v1/logs")
    assert result.status == 200, result.body
    assert not ExportLogsServiceResponse.FromString(result.body).HasField("partial_success")
    assert event_kinds(sidecar.run(run_id)).count("llm.content") == 5

    assert not trace_response(sidecar.post_otlp(traces.SerializeToString())).HasField("partial_success")
    run = sidecar.run(run_id)
    assert run["status"] == "completed"
    assert run["llm_calls"] == 4
    assert run["tool_calls"] == 1
    assert_still_serves(sidecar)


# --- OTLP/gRPC --------------------------------------------------------------------------------


def test_grpc_garbage_is_invalid_argument(sidecar: Sidecar) -> None:
    error = grpc_error(sidecar, GARBAGE)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details()
    assert_still_serves(sidecar)


def test_grpc_message_over_limit_is_resource_exhausted(limited: Sidecar) -> None:
    error = grpc_error(limited, b"\x0a" + b"x" * (2 * LIMIT))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_still_serves(limited)


def test_grpc_gzip_message_inflating_over_limit_is_resource_exhausted(limited: Sidecar) -> None:
    """The limit holds for the decompressed message: 1 MiB of zeros is ~1 KB on the wire."""
    error = grpc_error(limited, bytes(1 << 20), compression=grpc.Compression.Gzip)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_still_serves(limited)


def test_grpc_gzip_export_succeeds(sidecar: Sidecar) -> None:
    body, run_id = fresh_toolloop()
    raw = grpc_call(sidecar, body, f"/{TRACE_SERVICE}/Export", compression=grpc.Compression.Gzip)
    assert not ExportTraceServiceResponse.FromString(raw).HasField("partial_success")
    assert_toolloop_run(sidecar.run(run_id))
    assert_still_serves(sidecar)


@pytest.mark.parametrize(
    "method",
    [f"/{TRACE_SERVICE}/Exports", f"/{TRACE_SERVICE}/Query", "/opentelemetry.proto.collector.profiles.v1.X/Export"],
)
def test_grpc_unknown_method_is_unimplemented(sidecar: Sidecar, method: str) -> None:
    body, _ = fresh_toolloop()
    assert grpc_error(sidecar, body, method).code() == grpc.StatusCode.UNIMPLEMENTED
    assert_still_serves(sidecar)


@pytest.mark.parametrize(
    ("service", "body", "response_type"),
    [
        (LOGS_SERVICE, b"", ExportLogsServiceResponse),
        (METRICS_SERVICE, b"", ExportMetricsServiceResponse),
        (METRICS_SERVICE, metrics_request(), ExportMetricsServiceResponse),
        (TRACE_SERVICE, b"", ExportTraceServiceResponse),
    ],
    ids=["logs-empty", "metrics-empty", "metrics-sum", "traces-empty"],
)
def test_grpc_other_signals_and_empty_requests_succeed(
    sidecar: Sidecar, service: str, body: bytes, response_type: type[Message]
) -> None:
    raw = grpc_call(sidecar, body, f"/{service}/Export")
    assert not response_type.FromString(raw).HasField("partial_success")
    assert_still_serves(sidecar)


# --- the real OpenTelemetry SDK exporters -----------------------------------------------------


def export_agent_trace(exporter: SpanExporter, service_name: str) -> tuple[str, list[str]]:
    """A small agent run through its own TracerProvider + SimpleSpanProcessor: a workflow root,
    a chat call, then a tool call, at fixed offsets. Returns (run id, each export's result)."""
    recording = RecordingExporter(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(SimpleSpanProcessor(recording))
    tracer = provider.get_tracer("tests.e2e")
    t0 = time.time_ns()
    ms = 1_000_000
    root = tracer.start_span("e2e-agent.workflow", start_time=t0, attributes={"traceloop.workflow.name": "e2e-agent"})
    context = trace.set_span_in_context(root)
    llm = tracer.start_span(
        "chat gpt-4o-mini",
        context=context,
        kind=trace.SpanKind.CLIENT,
        start_time=t0 + 1 * ms,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 5,
            "gen_ai.response.finish_reasons": ("stop",),
        },
    )
    llm.end(end_time=t0 + 3 * ms)
    tool = tracer.start_span(
        "execute_tool lookup_order",
        context=context,
        start_time=t0 + 4 * ms,
        attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order"},
    )
    tool.end(end_time=t0 + 6 * ms)
    root.end(end_time=t0 + 10 * ms)
    run_id = str(uuid.UUID(int=root.get_span_context().trace_id))
    provider.shutdown()
    return run_id, recording.results


def assert_agent_run(run: dict[str, Any], run_id: str, service_name: str) -> None:
    assert run["run_id"] == run_id
    assert run["agent_id"] == "e2e-agent"
    assert run["service_name"] == service_name
    assert run["status"] == "completed"
    assert run["exit_reason"] == "final_answer"
    assert run["step_count"] == 2
    assert run["llm_calls"] == 1
    assert run["tool_calls"] == 1
    assert run["prompt_tokens"] == 12
    assert run["completion_tokens"] == 5
    assert event_kinds(run) == [
        "run.started",
        "llm.called",
        "llm.responded",
        "tool.called",
        "tool.responded",
        "run.completed",
    ]
    payloads = {e["event_type"]: e["payload"] for e in run["events"]}
    assert payloads["llm.called"]["model"] == "gpt-4o-mini"
    assert payloads["llm.responded"]["finish_reason"] == "stop"
    assert payloads["tool.called"]["tool_name"] == "lookup_order"


def test_sdk_grpc_exporter_delivers_an_agent_run(sidecar: Sidecar) -> None:
    exporter = GrpcSpanExporter(endpoint=sidecar.grpc_target, insecure=True)
    run_id, results = export_agent_trace(exporter, "e2e-grpc")
    assert results == ["SUCCESS"] * 3  # SimpleSpanProcessor: one export per span
    assert_agent_run(sidecar.run(run_id), run_id, "e2e-grpc")
    assert_still_serves(sidecar)


def test_sdk_http_exporter_delivers_an_agent_run(sidecar: Sidecar) -> None:
    exporter = HttpSpanExporter(endpoint=sidecar.http_url + "/v1/traces")
    run_id, results = export_agent_trace(exporter, "e2e-http")
    assert results == ["SUCCESS"] * 3
    assert_agent_run(sidecar.run(run_id), run_id, "e2e-http")
    assert_still_serves(sidecar)


def test_the_run_id_is_the_trace_id_as_a_uuid() -> None:
    from receiver.spans import run_id_from_trace_id

    trace_id = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")  # the W3C trace-context example
    assert run_id_from_trace_id(trace_id) == "0af76519-16cd-43dd-8448-eb211c80319c"
    assert run_id_from_trace_id(bytes(15) + b"\x01") == "00000000-0000-0000-0000-000000000001"
