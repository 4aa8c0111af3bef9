"""The SDK's own OpenTelemetry pipeline: a TracerProvider whose root spans take the run id as
trace id, a batch processor with a short schedule, and the OTLP/HTTP (protobuf) exporter.

The standard ``OTEL_EXPORTER_OTLP_*`` variables are honoured (endpoint, headers, timeout,
compression, TLS); without an endpoint the spans go to the local sidecar. Nothing is set
globally: the application's own tracer provider, if any, is left alone."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

SCOPE = "dunetrace.sdk"  # docs/sdk-spans.md: the receiver reads this scope's dunetrace.* attributes
DEFAULT_TRACES_ENDPOINT = "http://127.0.0.1:4318/v1/traces"  # the local sidecar's OTLP/HTTP receiver
DEFAULT_SCHEDULE_DELAY_MS = 200  # spans leave the agent within 0.2 s, not OTel's default 5 s
DEFAULT_EXPORT_TIMEOUT_S = 5.0


class RunIdGenerator(IdGenerator):
    """Random ids, except the trace id of a run's root span, which is the run id."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._pending = threading.local()

    def next_trace_id(self, trace_id: int) -> None:
        """The next trace id this thread asks for (the root span started right after)."""
        self._pending.trace_id = trace_id

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        pending = getattr(self._pending, "trace_id", None)
        if pending is not None:
            self._pending.trace_id = None
            return int(pending)
        return self._random.generate_trace_id()


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


def otlp_exporter() -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    configured = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    timed = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT")
    return OTLPSpanExporter(
        endpoint=None if configured else DEFAULT_TRACES_ENDPOINT,
        timeout=None if timed else DEFAULT_EXPORT_TIMEOUT_S,
    )


_UNSET = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)


class StepSpans:
    """Writes a step's span, already finished, straight to the provider's span processors.

    A step is reported once it has ended (run_context), so the SDK's span lifecycle (sampling,
    attribute cleaning, the on_start hooks, a mutable span copied into a readable one at its end)
    buys nothing and cost two thirds of a tracked call. The span is the same: the run's trace, a
    fresh span id from the provider's generator, its root as parent, the tracer's scope and the
    provider's resource. A step follows its root's sampling decision, as the SDK's default
    parent-based sampler does."""

    def __init__(
        self, processor: SpanProcessor, resource: Resource, scope: InstrumentationScope, ids: IdGenerator
    ) -> None:
        self._processor = processor
        self._resource = resource
        self._scope = scope
        self._ids = ids

    def write(
        self,
        name: str,
        parent: SpanContext,
        kind: SpanKind,
        start_ns: int,
        end_ns: int,
        attributes: Mapping[str, Any],
        error: bool,
    ) -> None:
        if not parent.trace_flags.sampled:
            return
        context = SpanContext(
            parent.trace_id, self._ids.generate_span_id(), False, parent.trace_flags, parent.trace_state
        )
        span = ReadableSpan(
            name=name,
            context=context,
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            kind=kind,
            status=_ERROR if error else _UNSET,
            start_time=start_ns,
            end_time=end_ns,
            instrumentation_scope=self._scope,
        )
        self._processor.on_end(span)


def build_provider(
    exporter: SpanExporter | None = None, schedule_delay_ms: int | None = None
) -> tuple[TracerProvider, RunIdGenerator, SynchronousMultiSpanProcessor]:
    """The provider, its id generator, and its chain of span processors (which StepSpans writes to)."""
    ids = RunIdGenerator()
    processors = SynchronousMultiSpanProcessor()
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    provider = TracerProvider(resource=Resource.create({}), id_generator=ids, active_span_processor=processors)
    delay = schedule_delay_ms or _env_int("OTEL_BSP_SCHEDULE_DELAY") or DEFAULT_SCHEDULE_DELAY_MS
    provider.add_span_processor(BatchSpanProcessor(exporter or otlp_exporter(), schedule_delay_millis=delay))
    return provider, ids, processors
