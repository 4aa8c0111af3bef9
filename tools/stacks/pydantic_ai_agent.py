"""Pydantic AI agent with built-in OTel instrumentation (no logfire), looping on lookup_order.

usage: python pydantic_ai_agent.py openai|anthropic [version]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from otel_setup import FAKE_URL, setup

provider = sys.argv[1]
version = int(sys.argv[2]) if len(sys.argv) > 2 else None
tp, _ = setup(f"pydantic-ai-{provider}-svc")

from pydantic_ai import Agent  # noqa: E402
from pydantic_ai.models.instrumented import InstrumentationSettings  # noqa: E402

if provider == "openai":
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(base_url=FAKE_URL + "/v1", api_key="sk-fake"))
else:
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.providers.anthropic import AnthropicProvider

    model = AnthropicModel("claude-haiku-4-5", provider=AnthropicProvider(base_url=FAKE_URL, api_key="sk-fake"))

kw = {"tracer_provider": tp}
if version:
    kw["version"] = version
# pydantic-ai 2.x: Agent(instrument=...) is gone; use Agent.instrument_all(...)
Agent.instrument_all(InstrumentationSettings(**kw))
agent = Agent(model, name="order-support-agent", instructions="You help with orders.")
calls = 0


@agent.tool_plain
def lookup_order(order_id: str) -> str:
    """Look up an order by id."""
    global calls
    calls += 1
    return f"Order {order_id}: status unknown, try again"


res = agent.run_sync("Where is my order A123?")
print("final:", res.output, "| tool executions:", calls)
tp.force_flush()
tp.shutdown()
