"""OpenAI Agents SDK agent that loops on lookup_order (fake LLM), traced to the sidecar.

usage: python agents_sdk.py openinference|openllmetry [responses|chat]
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from otel_setup import FAKE_URL, setup

which = sys.argv[1]
api = sys.argv[2] if len(sys.argv) > 2 else "responses"
tp, _ = setup(f"agents-sdk-{which}-svc")

if which == "openinference":
    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    OpenAIAgentsInstrumentor().instrument(tracer_provider=tp)
else:
    from opentelemetry.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    OpenAIAgentsInstrumentor(replace_existing_processors=True).instrument(tracer_provider=tp)

from agents import Agent, RunConfig, Runner, function_tool, set_default_openai_api, set_default_openai_client  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402

set_default_openai_client(AsyncOpenAI(base_url=FAKE_URL + "/v1", api_key="sk-fake"), use_for_tracing=False)
set_default_openai_api(api if api == "responses" else "chat_completions")

calls = 0


@function_tool
def lookup_order(order_id: str) -> str:
    """Look up an order by id."""
    global calls
    calls += 1
    return f"Order {order_id}: status unknown, try again"


agent = Agent(
    name="order-support-agent", instructions="You help with orders.", tools=[lookup_order], model="gpt-4o-mini"
)


async def main():
    rc = RunConfig(workflow_name=os.environ["WORKFLOW_NAME"]) if os.environ.get("WORKFLOW_NAME") else None
    res = await Runner.run(agent, "Where is my order A123?", max_turns=10, run_config=rc)
    print("final:", res.final_output, "| tool executions:", calls)


asyncio.run(main())
tp.force_flush()
tp.shutdown()
