"""Hand-written tool loop on the bare openai SDK, instrumented by OpenLIT (`openlit.init`, OpenLIT's own OTel setup).

usage: python openlit_openai_loop.py
One manual root span "invoke_agent order-agent" (gen_ai.operation.name=invoke_agent, gen_ai.agent.name=order-agent)
around the loop, as in openai_v2_loop.py. OpenLIT sets up the tracer (and, in newer releases, logger) provider itself
from otlp_endpoint (OTLP/HTTP protobuf, OTLP_ENDPOINT); content capture on (capture_message_content=True, OpenLIT's
default); metrics off (disable_metrics=True); pricing read from a local empty file, because by default
openlit.init downloads a pricing JSON from the internet. Works with openlit 1.34 … 1.45 (init's shared keywords only).
"""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from importlib.metadata import version

import openlit
from otel_setup import FAKE_URL, otlp_endpoint

pricing = os.path.join(tempfile.mkdtemp(prefix="openlit-pricing-"), "pricing.json")
with open(pricing, "w") as f:
    json.dump({"chat": {}, "embeddings": {}, "images": {}, "audio": {}}, f)
endpoint = otlp_endpoint("http")
print(f"[otel] openlit {version('openlit')} init: application_name=openlit-openai-svc endpoint={endpoint}", flush=True)
openlit.init(
    otlp_endpoint=endpoint,
    application_name="openlit-openai-svc",
    environment="capture",
    capture_message_content=True,
    disable_metrics=True,
    pricing_json=pricing,
)

from openai import OpenAI  # noqa: E402
from openai.resources.chat.completions import Completions  # noqa: E402
from opentelemetry import _logs, trace  # noqa: E402

# openlit.init logs and swallows its own failures (1.36.8 dies on a SyntaxError in an unrelated instrumentor):
# refuse to run uninstrumented.
if not hasattr(Completions.create, "__wrapped__"):
    sys.exit("openlit.init did not instrument openai (see the log above)")

client = OpenAI(base_url=FAKE_URL + "/v1", api_key="sk-fake")
tracer = trace.get_tracer("order-agent")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
        },
    }
]
calls = 0


def lookup_order(order_id):
    global calls
    calls += 1
    return f"Order {order_id}: status unknown, try again"


def run():
    messages = [
        {"role": "system", "content": "You help with orders."},
        {"role": "user", "content": "Where is my order A123?"},
    ]
    for _ in range(10):
        msg = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS).choices[0].message
        if not msg.tool_calls:
            return msg.content
        messages.append(
            {
                "role": "assistant",
                "content": msg.content,
                "tool_calls": [
                    {
                        "id": tc.id,
                        "type": "function",
                        "function": {"name": tc.function.name, "arguments": tc.function.arguments},
                    }
                    for tc in msg.tool_calls
                ],
            }
        )
        for tc in msg.tool_calls:
            out = lookup_order(**json.loads(tc.function.arguments))
            messages.append({"role": "tool", "tool_call_id": tc.id, "content": out})
    return None


with tracer.start_as_current_span(
    "invoke_agent order-agent",
    attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "order-agent"},
):
    final = run()
print("final:", final, "| tool executions:", calls)
tp = trace.get_tracer_provider()
lp = _logs.get_logger_provider()
for p in (tp, lp):  # OpenLIT's providers (newer releases reuse/make a LoggerProvider for their events)
    if hasattr(p, "force_flush"):
        p.force_flush(10_000)
for p in (tp, lp):
    if hasattr(p, "shutdown"):
        p.shutdown()
