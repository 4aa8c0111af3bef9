"""LlamaIndex FunctionAgent + OpenAI LLM (fake), instrumented by OpenInference.

usage: python llamaindex_agent.py [http|grpc]
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ["OTLP_PROTO"] = sys.argv[1] if len(sys.argv) > 1 else "http"
from otel_setup import FAKE_URL, setup

tp, _ = setup("llamaindex-order-svc")
from openinference.instrumentation.llama_index import LlamaIndexInstrumentor  # noqa: E402

LlamaIndexInstrumentor().instrument(tracer_provider=tp)

from llama_index.core.agent.workflow import FunctionAgent  # noqa: E402
from llama_index.llms.openai import OpenAI  # noqa: E402

calls = 0


def lookup_order(order_id: str) -> str:
    """Look up an order by id."""
    global calls
    calls += 1
    return f"Order {order_id}: status unknown, try again"


llm = OpenAI(model="gpt-4o-mini", api_base=FAKE_URL + "/v1", api_key="sk-fake")
agent = FunctionAgent(name="order-support-agent", tools=[lookup_order], llm=llm, system_prompt="You help with orders.")


async def main():
    res = await agent.run("Where is my order A123?")
    print("final:", str(res), "| tool executions:", calls)


asyncio.run(main())
tp.force_flush()
tp.shutdown()
