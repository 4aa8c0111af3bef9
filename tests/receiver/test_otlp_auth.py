"""Optional bearer keys on the OTLP receivers (issue 11), through the real SDK exporters too."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

from tests.otel_sdk import RecordingExporter
from tests.sidecar import Sidecar, fixture_bytes, with_new_trace_ids

KEY = "otlp-test-key-0123456789"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture
def keyed(make_sidecar: Callable[..., Sidecar]) -> Sidecar:
    return make_sidecar(env={"DUNETRACE_OTLP_KEYS": KEY})


def test_http_needs_the_key(keyed: Sidecar) -> None:
    body, ids = with_new_trace_ids(fixture_bytes("openllmetry-openai-toolloop.pb"))
    for headers in ({}, {"Authorization": "Bearer wrong-key-000000000000"}, {"Authorization": KEY}):
        refused = keyed.post_otlp(body, extra_headers=headers)
        assert refused.status == 401, headers
        assert status_pb2.Status.FromString(refused.body).message.startswith("a valid")
    assert keyed.post_otlp(body, extra_headers={"Authorization": f"Bearer {KEY}"}).status == 200
    [run_id] = ids.values()
    assert keyed.run(run_id)["tool_calls"] == 4


def test_grpc_needs_the_key(keyed: Sidecar) -> None:
    body, ids = with_new_trace_ids(fixture_bytes("openllmetry-openai-toolloop.pb"))
    with grpc.insecure_channel(keyed.grpc_target) as channel:
        call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as refused:
            call(body, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        call(body, timeout=10, metadata=(("authorization", f"Bearer {KEY}"),))
    [run_id] = ids.values()
    assert keyed.run(run_id)["tool_calls"] == 4


def _export_one_span(exporter: SpanExporter) -> tuple[list[str], str]:
    recording = RecordingExporter(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": "auth-test"}))
    provider.add_span_processor(SimpleSpanProcessor(recording))
    tracer = provider.get_tracer("auth-test")
    with tracer.start_as_current_span("chat", attributes={"gen_ai.operation.name": "chat"}) as span:
        span.set_attribute("gen_ai.request.model", "m")
        span.set_attribute("gen_ai.usage.input_tokens", 3)
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    return recording.results, trace_id


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_sdk_exporters_with_the_key_deliver_and_without_it_fail(keyed: Sidecar, transport: str) -> None:
    def exporter(key: str | None) -> SpanExporter:
        if transport == "http":
            headers = {"Authorization": f"Bearer {key}"} if key else None
            return HttpSpanExporter(endpoint=keyed.http_url + "/v1/traces", headers=headers, timeout=5)
        metadata = (("authorization", f"Bearer {key}"),) if key else None
        return GrpcSpanExporter(endpoint=keyed.grpc_target, insecure=True, headers=metadata, timeout=5)

    results, trace_id = _export_one_span(exporter(KEY))
    assert results == ["SUCCESS"]
    assert keyed.api(f"/v1/runs/{trace_id}").status == 200
    results, trace_id = _export_one_span(exporter(None))
    assert results == ["FAILURE"]  # 401 / UNAUTHENTICATED are final: the exporter does not retry
    assert keyed.api(f"/v1/runs/{trace_id}").status == 404
