"""The three OTLP signals: their request/response types, paths and gRPC services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as pb_logs_service
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb_metrics_service
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb_trace_service

from receiver.ingest import EncodedRequest, ExportResult, Ingest


@dataclass(frozen=True, slots=True)
class OtlpSignal:
    name: str
    http_path: str
    grpc_service: str
    request_type: type[Message]
    response_type: type[Message]
    partial_field: str  # rejected_spans / rejected_log_records / rejected_data_points
    export: Callable[[Ingest, EncodedRequest, str], Awaitable[ExportResult]]

    def response(self, result: ExportResult) -> Message:
        response = self.response_type()
        if result.rejected or result.message:
            partial = getattr(response, "partial_success")  # noqa: B009 - every Export*Response has it
            setattr(partial, self.partial_field, result.rejected)
            partial.error_message = result.message
        return response


TRACES = OtlpSignal(
    "traces",
    "/v1/traces",
    "opentelemetry.proto.collector.trace.v1.TraceService",
    pb_trace_service.ExportTraceServiceRequest,
    pb_trace_service.ExportTraceServiceResponse,
    "rejected_spans",
    lambda ingest, request, transport: ingest.export_traces(request, transport),
)
LOGS = OtlpSignal(
    "logs",
    "/v1/logs",
    "opentelemetry.proto.collector.logs.v1.LogsService",
    pb_logs_service.ExportLogsServiceRequest,
    pb_logs_service.ExportLogsServiceResponse,
    "rejected_log_records",
    lambda ingest, request, transport: ingest.export_logs(request, transport),
)
METRICS = OtlpSignal(
    "metrics",
    "/v1/metrics",
    "opentelemetry.proto.collector.metrics.v1.MetricsService",
    pb_metrics_service.ExportMetricsServiceRequest,
    pb_metrics_service.ExportMetricsServiceResponse,
    "rejected_data_points",
    lambda ingest, request, transport: ingest.export_metrics(request, transport),
)
ALL_SIGNALS = (TRACES, LOGS, METRICS)
