"""LangGraph create_react_agent + ChatOpenAI (fake LLM), instrumented by OpenLLMetry (traceloop-sdk).

usage: python langgraph_traceloop.py [http|grpc] [prebuilt|langchain]
  prebuilt   langgraph.prebuilt.create_react_agent (default)
  langchain  langchain.agents.create_agent (LangChain 1.x)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from otel_setup import FAKE_URL, otlp_endpoint

proto = sys.argv[1] if len(sys.argv) > 1 else "http"
flavour = sys.argv[2] if len(sys.argv) > 2 else "prebuilt"
os.environ.setdefault("TRACELOOP_TELEMETRY", "false")
os.environ.setdefault("TRACELOOP_METRICS_ENABLED", "false")

from traceloop.sdk import Traceloop  # noqa: E402

if proto == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    Traceloop.init(
        app_name="langgraph-order-svc",
        exporter=OTLPSpanExporter(endpoint=otlp_endpoint("grpc"), insecure=True),
        disable_batch=False,
    )
else:
    # what the README suggests: the OTLP/HTTP base URL
    Traceloop.init(app_name="langgraph-order-svc", api_endpoint=otlp_endpoint("http"))

from langchain_core.tools import tool  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402

calls = 0


@tool
def lookup_order(order_id: str) -> str:
    """Look up an order by id."""
    global calls
    calls += 1
    return f"Order {order_id}: status unknown, try again"


llm = ChatOpenAI(model="gpt-4o-mini", base_url=FAKE_URL + "/v1", api_key="sk-fake")
if flavour == "langchain":
    from langchain.agents import create_agent

    agent = create_agent(llm, tools=[lookup_order], system_prompt="You help with orders.", name="order-support-agent")
else:
    from langgraph.prebuilt import create_react_agent

    agent = create_react_agent(llm, tools=[lookup_order], prompt="You help with orders.", name="order-support-agent")

res = agent.invoke({"messages": [("user", "Where is my order A123?")]}, {"recursion_limit": 25})
print("final:", res["messages"][-1].content, "| tool executions:", calls)
Traceloop.flush() if hasattr(Traceloop, "flush") else None
from opentelemetry import trace  # noqa: E402

trace.get_tracer_provider().force_flush()
