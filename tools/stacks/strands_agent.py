"""Strands Agents agent (OpenAIModel, which always streams) with Strands' built-in OTel tracing, on lookup_order.

usage: python strands_agent.py
Strands records message content as span events: per-message gen_ai.{system,user,assistant,tool}.message /
gen_ai.choice events by default, one gen_ai.client.inference.operation.details event per content side with
OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental (both read from the environment when the Agent's
tracer is created). The global tracer provider comes from otel_setup (OTLP/HTTP protobuf to OTLP_ENDPOINT).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from otel_setup import FAKE_URL, setup

tp, _ = setup("strands-openai-svc")

from strands import Agent, tool  # noqa: E402
from strands.models.openai import OpenAIModel  # noqa: E402

model = OpenAIModel(client_args={"base_url": FAKE_URL + "/v1", "api_key": "sk-fake"}, model_id="gpt-4o-mini")
calls = 0


@tool
def lookup_order(order_id: str) -> str:
    """Look up an order by id.

    Args:
        order_id: the order id
    """
    global calls
    calls += 1
    return f"Order {order_id}: status unknown, try again"


agent = Agent(
    model=model,
    name="order-support-agent",
    system_prompt="You help with orders.",
    tools=[lookup_order],
    callback_handler=None,
)
res = agent("Where is my order A123?")
print("final:", str(res).strip(), "| tool executions:", calls)
tp.force_flush()
tp.shutdown()
