"""Hand-written tool loop on the bare openai SDK, OpenLLMetry with its @agent / @tool decorators (no framework)."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from otel_setup import FAKE_URL, otlp_endpoint

os.environ.setdefault("TRACELOOP_TELEMETRY", "false")
os.environ.setdefault("TRACELOOP_METRICS_ENABLED", "false")
from traceloop.sdk import Traceloop
from traceloop.sdk.decorators import agent, tool

Traceloop.init(app_name="traceloop-decorators-svc", api_endpoint=otlp_endpoint("http"))
from openai import OpenAI  # noqa: E402

client = OpenAI(base_url=FAKE_URL + "/v1", api_key="sk-fake")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
]


calls = 0


@tool(name="lookup_order")
def lookup_order(order_id):
    global calls
    calls += 1
    return f"Order {order_id}: status unknown, try again"


@agent(name="order-support-agent")
def run():
    msgs = [{"role": "user", "content": "Where is my order A123?"}]
    for _ in range(10):
        m = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, tools=TOOLS).choices[0].message
        if not m.tool_calls:
            return m.content
        msgs.append(m.model_dump(exclude_none=True))
        for tc in m.tool_calls:
            msgs.append(
                {"role": "tool", "tool_call_id": tc.id, "content": lookup_order(**json.loads(tc.function.arguments))}
            )


print("final:", run(), "| tool executions:", calls)
from opentelemetry import trace  # noqa: E402

trace.get_tracer_provider().force_flush()
