"""Scenario (i): DunetraceOTelReceiver.attach(provider, dt, agent_id=...) replays gen_ai spans as a dt.run.

The agent here is instrumented with OpenTelemetry only: its spans are made with the OTel SDK by hand (as the
capture script of the contract does), and the receiver, attached to the provider as a span processor, replays
each finished trace (when its root span ends) as one `with dt.run(agent_id, model=...)` that the SDK ships to
the daemon's POST /v1/ingest. One trace, in this order under the root span "agent_run":

    chat gpt-4o             LLM (gen_ai.request.model), 120 in / 18 out, finish_reason tool_calls
    execute_tool get_weather  tool, {"city": "Paris"}            } twice, identical
    vector search           retrieval (vector_db.collection_name city-guides), 3 documents
    format_answer           no gen_ai attribute: ignored by the receiver
    chat gpt-4o             LLM, 210 prompt / 25 completion (older usage names), answer in gen_ai.output.messages

So the run has 2 LLM calls, 2 tool calls and 1 retrieval. The receiver gives the run a fresh uuid4 run id (not
the OTel trace id) and does not expose it: the test finds the run by its agent id.

Prints: {"scenario": "i_otel_receiver", "agent_id", "otel_trace_id", "spans_fed"}.
"""

import json
import time

from _common import client_kwargs, emit_result, setup_logging
from dunetrace import Dunetrace
from dunetrace.integrations.otel_receiver import DunetraceOTelReceiver
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

setup_logging()
AGENT_ID = "otel-recv-agent"

dt = Dunetrace(**client_kwargs())
provider = TracerProvider()
fed = InMemorySpanExporter()  # a copy of what the receiver was fed
provider.add_span_processor(SimpleSpanProcessor(fed))
DunetraceOTelReceiver.attach(provider, dt, agent_id=AGENT_ID)
tracer = provider.get_tracer("manual-genai")

with tracer.start_as_current_span("agent_run") as root:
    otel_trace_id = format(root.get_span_context().trace_id, "032x")
    with tracer.start_as_current_span("chat gpt-4o") as span:
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 120,
                "gen_ai.usage.output_tokens": 18,
                "gen_ai.completion.0.finish_reason": "tool_calls",
                "gen_ai.completion.0.content": "",
            }
        )
        time.sleep(0.02)
    for _ in range(2):
        with tracer.start_as_current_span("execute_tool get_weather") as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "get_weather",
                    "gen_ai.tool.call.arguments": json.dumps({"city": "Paris"}),
                    "gen_ai.tool.call.result": json.dumps({"forecast": "sunny"}),
                }
            )
            time.sleep(0.01)
    with tracer.start_as_current_span("vector search") as span:
        span.set_attributes(
            {
                "vector_db.vendor": "chroma",
                "vector_db.collection_name": "city-guides",
                "db.result_count": 3,
                "retrieval.top_score": 0.91,
                "retrieval.documents": "Paris is the capital of France.",
            }
        )
    with tracer.start_as_current_span("format_answer") as span:
        span.set_attribute("app.step", "format")
    with tracer.start_as_current_span("chat gpt-4o") as span:
        span.set_attributes(
            {
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.usage.prompt_tokens": 210,
                "gen_ai.usage.completion_tokens": 25,
                "gen_ai.output.messages": json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": "It is sunny in Paris."}]}]
                ),
            }
        )
        time.sleep(0.01)

dt.shutdown(timeout=10)
provider.shutdown()
emit_result("i_otel_receiver", agent_id=AGENT_ID, otel_trace_id=otel_trace_id, spans_fed=len(fed.get_finished_spans()))
