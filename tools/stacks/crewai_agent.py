"""CrewAI crew (one agent, one task, one tool) on the fake OpenAI, instrumented by OpenInference (crewai + openai).

usage: python crewai_agent.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ["CREWAI_DISABLE_TELEMETRY"] = "true"
os.environ["CREWAI_TRACING_ENABLED"] = "false"
from otel_setup import FAKE_URL, setup

tp, _ = setup("crewai-order-svc")
from openinference.instrumentation.crewai import CrewAIInstrumentor  # noqa: E402
from openinference.instrumentation.openai import OpenAIInstrumentor  # noqa: E402

CrewAIInstrumentor().instrument(tracer_provider=tp)
OpenAIInstrumentor().instrument(tracer_provider=tp)

from crewai import LLM, Agent, Crew, Task  # noqa: E402
from crewai.tools import tool  # noqa: E402

calls = 0


@tool("lookup_order")
def lookup_order(order_id: str) -> str:
    """Look up an order by id."""
    global calls
    calls += 1
    return f"Order {order_id}: status unknown, try again"


llm = LLM(model="openai/gpt-4o-mini", base_url=FAKE_URL + "/v1", api_key="sk-fake")
agent = Agent(
    role="Order support agent",
    goal="Answer order questions",
    backstory="You help with orders.",
    tools=[lookup_order],
    llm=llm,
    verbose=False,
    max_iter=10,
)
task = Task(description="Where is my order A123?", expected_output="The order status", agent=agent)
res = Crew(agents=[agent], tasks=[task], verbose=False).kickoff()
print("final:", str(res), "| tool executions:", calls)
tp.force_flush()
tp.shutdown()
