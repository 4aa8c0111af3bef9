"""Scenario (h): the SDK's OTel exporter pointed at the daemon's own OTLP/HTTP receiver, next to HTTP shipping.

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=DT_OTLP_TRACES_URL)))
    dt = Dunetrace(api_key=..., endpoint=..., otel_exporter=DunetraceOTelExporter(tracer_provider=provider))

So every event of the run reaches the daemon twice: as an SDK event on POST /v1/ingest and as a span of scope
"dunetrace" on POST /v1/traces (which the daemon leaves out). The run is the tool loop of scenario (a): the
auto-instrumented openai client against the fake OpenAI server, which the test scripts to ask for
get_weather({"city": "Paris"}) four times, then answer.

What the provider exported is counted in-process: a recording exporter beside the OTLP one (every span the
provider ended), and a wrapper around the OTLP exporter (spans and export calls that the daemon acknowledged).

Prints: {"scenario": "h_otel_exporter", "run_id", "otel_trace_id", "agent_id", "llm_calls", "tool_calls",
"answer", "spans": {name: count} of every span ended, "scopes": [scope names], "span_trace_ids": [hex ids],
"otlp": {"calls_ok", "spans_ok", "calls_failed"}}.
"""

import threading
from collections import Counter

from _common import FAKE_OPENAI_KEY, client_kwargs, emit_result, env, setup_logging
from _weather import weather_loop
from dunetrace import Dunetrace
from dunetrace.integrations.otel import DunetraceOTelExporter
from openai import OpenAI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

setup_logging()
AGENT_ID = "otel-weather-agent"


class CountingExporter(SpanExporter):
    """The OTLP exporter, counting what the daemon acknowledged (SUCCESS) and what it did not."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.calls_ok = self.spans_ok = self.calls_failed = 0

    def export(self, spans):  # type: ignore[no-untyped-def]
        result = self.inner.export(spans)
        with self.lock:
            if result is SpanExportResult.SUCCESS:
                self.calls_ok += 1
                self.spans_ok += len(spans)
            else:
                self.calls_failed += 1
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


provider = TracerProvider()
recorded = InMemorySpanExporter()
provider.add_span_processor(SimpleSpanProcessor(recorded))
otlp = CountingExporter(OTLPSpanExporter(endpoint=env("DT_OTLP_TRACES_URL"), timeout=10))
provider.add_span_processor(BatchSpanProcessor(otlp, schedule_delay_millis=200))

dt = Dunetrace(**client_kwargs(), otel_exporter=DunetraceOTelExporter(tracer_provider=provider))
dt.auto_instrument(["openai"])
oai = OpenAI(api_key=FAKE_OPENAI_KEY, base_url=env("FAKE_OPENAI_BASE_URL"), max_retries=0, timeout=30)

run, llm_calls, tool_calls, answer = weather_loop(dt, oai, AGENT_ID)

dt.shutdown(timeout=10)
provider.force_flush(timeout_millis=15_000)
provider.shutdown()

spans = recorded.get_finished_spans()
emit_result(
    "h_otel_exporter",
    run_id=run.run_id,
    otel_trace_id=run.otel_trace_id,
    agent_id=AGENT_ID,
    llm_calls=llm_calls,
    tool_calls=tool_calls,
    answer=answer,
    spans=dict(Counter(s.name for s in spans)),
    scopes=sorted({s.instrumentation_scope.name for s in spans if s.instrumentation_scope}),
    span_trace_ids=sorted({format(s.context.trace_id, "032x") for s in spans}),
    otlp={"calls_ok": otlp.calls_ok, "spans_ok": otlp.spans_ok, "calls_failed": otlp.calls_failed},
)
