"""``DunetraceOTelExporter``: the runs of a ``Dunetrace`` client also go to *your* OpenTelemetry
``TracerProvider`` (Datadog, Tempo, Honeycomb, Jaeger ... through your own exporters)::

    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    dt = Dunetrace(otel_exporter=DunetraceOTelExporter(provider))

Each span of a run, as it ends, is handed to your provider's span processors as a copy: the same
trace id (the run id — docs/sdk-spans.md), the same span ids, parents, times, attributes and
events, under your provider's resource. Nothing is added that the sidecar's copy does not have —
content is already reduced to hashes and lengths in the process — except on the root span: at
run end the failure signals the SDK's detectors found in the run are written on it as
``dunetrace.signal.N.failure_type`` / ``.severity`` / ``.confidence`` (N from 0), and a HIGH or
CRITICAL one sets its status to ERROR.

The copies carry the instrumentation scope **``dunetrace``** (the run's own spans: ``dunetrace.sdk``).
The sidecar leaves spans of that scope out — they copy a run it receives by another path — so a
provider that also exports to the sidecar (``OTLPSpanExporter()`` defaults to localhost:4317)
never makes it count a run twice, and the root's ERROR status, which says "a signal was found",
not "the run failed", never turns a completed run into an errored one there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Status, StatusCode

from .._detectors import events as ev

if TYPE_CHECKING:
    from ..client import Dunetrace
    from ..run_context import RunContext

logger = logging.getLogger("dunetrace")

MIRROR_SCOPE = "dunetrace"  # the sidecar leaves this scope out (receiver/spans.py DUNETRACE_SDK_SCOPE)
ERROR_SEVERITIES = frozenset({"HIGH", "CRITICAL"})
MAX_PENDING_RUNS = 4096  # signals waiting for their root span to end (one per run, popped at once)
# Scope attribute of the steps DunetraceOTelReceiver builds from your provider's own spans: they
# repeat those spans' ids, so they are not copied back to it (the root, which is new, is).
SOURCE_ATTRIBUTE = "dunetrace.source"
RECEIVER_SOURCE = "otel_receiver"


def signal_attributes(signals: Sequence[Any]) -> dict[str, Any]:
    """``dunetrace.signal.N.*`` for the signals found, in the order found (shadow ones left out)."""
    out: dict[str, Any] = {}
    index = 0
    for signal in signals:
        if getattr(signal, "shadow", False):
            continue
        out[f"dunetrace.signal.{index}.failure_type"] = str(signal.failure_type)
        out[f"dunetrace.signal.{index}.severity"] = str(signal.severity)
        out[f"dunetrace.signal.{index}.confidence"] = float(signal.confidence)
        index += 1
    return out


class DunetraceOTelExporter:
    """Runs also go to ``tracer_provider`` (an OpenTelemetry SDK ``TracerProvider``; default: the
    global one). ``tracer`` (an SDK ``Tracer``), ``tracer_name`` and ``capture_content`` are
    accepted for the published SDK's signature: a tracer stands for its provider's processors,
    the copies' scope is always ``dunetrace``, and content is never captured (it never exists
    outside the process unhashed)."""

    def __init__(
        self,
        tracer_provider: Any = None,
        *,
        tracer: Any = None,
        tracer_name: str = MIRROR_SCOPE,
        capture_content: bool = False,
    ) -> None:
        self._target, self._resource = _processors_of(tracer_provider, tracer)
        self._client: Dunetrace | None = None
        self._signals: dict[int, list[Any]] = {}
        self._lock = threading.Lock()
        self._warned = False

    # --- wiring (Dunetrace(otel_exporter=...) calls _attach once its provider exists) ------

    def _attach(self, client: Dunetrace) -> None:
        if self._client is not None and self._client is not client:
            raise ValueError("a DunetraceOTelExporter serves one Dunetrace client")
        if self._client is None:
            self._client = client
            client._provider.add_span_processor(_MirrorProcessor(self))

    # --- run end (RunContext._end, before the root span ends) --------------------------------

    def _run_ending(self, run: RunContext) -> None:
        """The signals of the run, for its root span: the live detectors over the events not yet
        folded, then the end-of-run detectors. Never raises (the run must end whatever happens)."""
        try:
            backlog = list(run._backlog)
            terminal = next((e for e in reversed(backlog) if e.kind in ev.TERMINAL_KINDS), None)
            run._fold(True)
            if terminal is not None:
                run.signals.extend(run._client._engine.evaluate_end(run._view, terminal, terminal.ts_ns))
            trace_id = run._root.get_span_context().trace_id
            with self._lock:
                if len(self._signals) >= MAX_PENDING_RUNS:
                    self._signals.pop(next(iter(self._signals)))
                self._signals[trace_id] = list(run.signals)
        except Exception:
            logger.debug("Dunetrace: could not evaluate run %s for the OTel exporter", run.run_id, exc_info=True)

    # --- copies ------------------------------------------------------------------------------

    def _copy(self, span: ReadableSpan) -> None:
        scope = span.instrumentation_scope
        built_from_yours = scope is not None and (scope.attributes or {}).get(SOURCE_ATTRIBUTE) == RECEIVER_SOURCE
        if built_from_yours and span.parent is not None:
            return  # a step DunetraceOTelReceiver built from one of your provider's spans: it has that one
        attributes = dict(span.attributes or {})
        status = span.status
        if span.parent is None:
            with self._lock:
                signals = self._signals.pop(span.context.trace_id, [])
            attributes.update(signal_attributes(signals))
            severe = [s for s in signals if not getattr(s, "shadow", False) and s.severity in ERROR_SEVERITIES]
            if severe and status.status_code is not StatusCode.ERROR:
                status = Status(StatusCode.ERROR, ", ".join(f"{s.failure_type} [{s.severity}]" for s in severe))
        version = scope.version if scope is not None else None
        copy = ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=self._resource,
            attributes=attributes,
            events=span.events,
            links=span.links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=InstrumentationScope(MIRROR_SCOPE, version),
        )
        try:
            self._target.on_end(copy)
        except Exception:
            if not self._warned:
                self._warned = True
                logger.warning("Dunetrace: your TracerProvider's span processors refused a run's span", exc_info=True)

    def _force_flush(self, timeout_millis: int) -> bool:
        try:
            return bool(self._target.force_flush(timeout_millis))
        except Exception:
            return False


class _MirrorProcessor(SpanProcessor):
    """On the client's own provider: every span that ends is copied to the user's provider.
    Shutting the client down flushes the user's provider but leaves it running (it is theirs)."""

    def __init__(self, exporter: DunetraceOTelExporter) -> None:
        self._exporter = exporter

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        self._exporter._copy(span)

    def shutdown(self) -> None:
        self._exporter._force_flush(5000)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter._force_flush(timeout_millis)


def _processors_of(tracer_provider: Any, tracer: Any) -> tuple[Any, Any]:
    """The span processor chain and resource of the provider the copies go to."""
    if tracer_provider is None and tracer is None:
        from opentelemetry import trace

        tracer_provider = trace.get_tracer_provider()
    if tracer_provider is None and tracer is not None:
        processors = getattr(tracer, "span_processor", None) or getattr(tracer, "_span_processor", None)
        resource = getattr(tracer, "resource", None)
    else:
        processors = getattr(tracer_provider, "_active_span_processor", None)
        resource = getattr(tracer_provider, "resource", None)
    if processors is None or not hasattr(processors, "on_end"):
        raise TypeError(
            "DunetraceOTelExporter needs an OpenTelemetry SDK TracerProvider "
            "(opentelemetry.sdk.trace.TracerProvider), got " + type(tracer_provider or tracer).__name__
        )
    return processors, resource
