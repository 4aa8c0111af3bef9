"""LangGraph create_react_agent variants.

usage: python langgraph_variants.py traceloop-anthropic | openinference-openai
  traceloop-anthropic   ChatAnthropic (fake /v1/messages) under OpenLLMetry (langchain + anthropic both on)
  openinference-openai  ChatOpenAI under OpenInference's LangChain instrumentation (plain OTel SDK exporter)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from otel_setup import FAKE_URL, otlp_endpoint

variant = sys.argv[1]
os.environ.setdefault("TRACELOOP_TELEMETRY", "false")
os.environ.setdefault("TRACELOOP_METRICS_ENABLED", "false")

if variant == "traceloop-anthropic":
    from traceloop.sdk import Traceloop

    Traceloop.init(app_name="langgraph-anthropic-svc", api_endpoint=otlp_endpoint("http"))
    from langchain_anthropic import ChatAnthropic

    llm = ChatAnthropic(model="claude-haiku-4-5", base_url=FAKE_URL, api_key="sk-fake")
else:
    from otel_setup import setup

    tp, _ = setup("langgraph-openinference-svc")
    from openinference.instrumentation.langchain import LangChainInstrumentor

    LangChainInstrumentor().instrument(tracer_provider=tp)
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="gpt-4o-mini", base_url=FAKE_URL + "/v1", api_key="sk-fake")

from langchain_core.tools import tool  # noqa: E402
from langgraph.prebuilt import create_react_agent  # noqa: E402

calls = 0


@tool
def lookup_order(order_id: str) -> str:
    """Look up an order by id."""
    global calls
    calls += 1
    return f"Order {order_id}: status unknown, try again"


agent = create_react_agent(llm, tools=[lookup_order], prompt="You help with orders.", name="order-support-agent")
res = agent.invoke({"messages": [("user", "Where is my order A123?")]})
print("final:", res["messages"][-1].content, "| tool executions:", calls)
from opentelemetry import trace  # noqa: E402

trace.get_tracer_provider().force_flush()
