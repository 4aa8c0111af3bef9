"""The docs' "OpenTelemetry" and "OpenLLMetry / OTel receiver" code blocks (../shared/spec/seed-dunetrace-docs.txt),
verbatim between the markers (the second uses the first's provider and dt), then an agent on OpenLLMetry:
the openai client (OPENAI_BASE_URL: the test's fake) in a Traceloop @workflow with a @tool, once looping
on the tool and once under a stop policy. OpenLLMetry exports to TRACELOOP_BASE_URL, the provider's
OTLPSpanExporter() and our own export to OTEL_EXPORTER_OTLP_ENDPOINT (the test's servers)."""

# ruff: noqa: I001, E402
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
# --- the docs' "OpenLLMetry / OTel receiver" block, verbatim ---
from dunetrace.integrations.otel_receiver import DunetraceOTelReceiver
DunetraceOTelReceiver.attach(provider, dt, agent_id="my-agent")
from traceloop.sdk import Traceloop
Traceloop.init(app_name="my-agent", tracer_provider=provider)
# --- end of the docs ---
# fmt: on

import json
import os
import uuid

from opentelemetry import trace
from openai import OpenAI
from traceloop.sdk.decorators import tool, workflow

from _common import result
from dunetrace import PolicyViolation

MARKER = os.environ["OTEL_MARKER"]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search orders.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


@tool(name="search")
def search(q: str) -> str:
    return f"no result for {q} ({MARKER} tool output)"


@workflow(name="order-research")
def research(question: str) -> dict:
    run_id = str(uuid.UUID(int=trace.get_current_span().get_span_context().trace_id))
    client = OpenAI()
    messages = [
        {"role": "system", "content": f"You find orders. {MARKER} system"},
        {"role": "user", "content": question},
    ]
    answer, error = None, None
    try:
        for _ in range(8):
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
            message = reply.choices[0].message
            if not message.tool_calls:
                answer = message.content
                break
            messages.append(
                {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in message.tool_calls]}
            )
            for call in message.tool_calls:
                messages.append(
                    {"role": "tool", "tool_call_id": call.id, "content": search(**json.loads(call.function.arguments))}
                )
    except PolicyViolation as exc:
        error = {"policy": exc.policy_name, "llm_calls_made": sum(1 for m in messages if m["role"] == "assistant")}
    return {"run_id": run_id, "answer": answer, "stopped": error}


looped = research(f"Where is order A123? {MARKER} prompt")
dt.add_policy(
    name="cap tool calls",
    condition={"trigger": "tool_call_count", "operator": "gt", "value": 2},
    action={"type": "stop"},
)
stopped = research(f"Where is order B456? {MARKER} prompt")
dt.shutdown(timeout=5)
provider.force_flush()
result("otel_receiver", looped=looped, stopped=stopped)
