"""Helpers around the real OpenTelemetry SDK exporters."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class RecordingExporter(SpanExporter):
    """Delegates to a real OTLP exporter and keeps each export's result."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.results: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        outcome = self.inner.export(spans)
        self.results.append(outcome.name)
        return outcome

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)
