"""The docs' "OpenTelemetry" code block (../shared/spec/seed-dunetrace-docs.txt), verbatim between the
markers, then two runs: one that loops on a tool (TOOL_LOOP, HIGH) and a healthy one. OTLPSpanExporter()
and our own export reach local servers through OTEL_EXPORTER_OTLP_ENDPOINT (the test's proxy)."""

# ruff: noqa: I001
# fmt: off
from dunetrace import Dunetrace  # the block uses Dunetrace as every other block of the docs imports it
# --- the docs' "OpenTelemetry" block, verbatim ---
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from dunetrace.integrations.otel import DunetraceOTelExporter
resource = Resource.create({
"service.name": "my-agent-service",
"deployment.environment": "production",
})
provider = TracerProvider(resource=resource)
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
dt = Dunetrace(otel_exporter=DunetraceOTelExporter(provider))
# --- end of the docs ---
# fmt: on

from _common import result  # noqa: E402

with dt.run("otel-loop-agent") as loop:
    for i in range(4):
        loop.llm_called("gpt-4o", prompt="find the order")
        loop.llm_responded(
            output="",
            finish_reason="tool_calls",
            tool_calls=[{"name": "search", "id": f"call_{i}", "arguments": {"q": "A123"}}],
        )
        loop.tool_called("search", {"q": "A123"}, tool_call_id=f"call_{i}")
        loop.tool_responded("search", output="no result")
    loop.llm_called("gpt-4o", prompt="find the order")
    loop.llm_responded(output="I could not find it.")
    loop.final_answer()
with dt.run("otel-healthy-agent") as healthy:
    healthy.llm_called("gpt-4o", prompt="find the order")
    healthy.llm_responded(
        output="",
        finish_reason="tool_calls",
        tool_calls=[{"name": "search", "id": "call_h", "arguments": {"q": "A123"}}],
    )
    healthy.tool_called("search", {"q": "A123"}, tool_call_id="call_h")
    healthy.tool_responded("search", output="shipped")
    healthy.llm_called("gpt-4o", prompt="find the order")
    healthy.llm_responded(output="It has shipped.")
    healthy.final_answer()
with dt.run("otel-long-agent") as long:  # the loop first, then more events than the SDK keeps unfolded (256)
    for _ in range(4):
        long.tool_called("search", {"q": "A123"})
        long.tool_responded("search", output="no result")
    for i in range(140):
        long.tool_called("lookup", {"order": f"A-{i}"})
        long.tool_responded("lookup", output=f"order A-{i} shipped")
    long.final_answer()
dt.shutdown(timeout=5)
provider.force_flush()
result(
    "otel_exporter",
    loop=loop.run_id,
    healthy=healthy.run_id,
    loop_signals=[(s.failure_type, s.severity) for s in loop.signals],
    long_signals=sorted(s.failure_type for s in long.signals),
)
