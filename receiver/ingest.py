"""What the OTLP servers hand decoded requests to (the pipeline implements it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as pb_logs_service
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb_metrics_service
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb_trace_service


@dataclass(frozen=True, slots=True)
class ExportResult:
    """Items refused (partial success) and why; 0 and "" is full success."""

    rejected: int = 0
    message: str = ""


class Ingest(Protocol):
    def check_capacity(self) -> None:
        """Raise ReceiverError(QUEUE_FULL | SHUTTING_DOWN) when no more work can be taken."""

    def note_refused(self, transport: str, signal: str, reason: str) -> None:
        """A whole export request was refused (counted, never logged per request)."""

    async def export_traces(self, request: pb_trace_service.ExportTraceServiceRequest, transport: str) -> ExportResult:
        """Translate and store; returns once the result is durable. Raises ReceiverError."""

    async def export_logs(self, request: pb_logs_service.ExportLogsServiceRequest, transport: str) -> ExportResult:
        """gen_ai content records are used, the rest dropped and counted."""

    async def export_metrics(
        self, request: pb_metrics_service.ExportMetricsServiceRequest, transport: str
    ) -> ExportResult:
        """Accepted so default OpenLLMetry setups see no errors; counted and dropped."""
