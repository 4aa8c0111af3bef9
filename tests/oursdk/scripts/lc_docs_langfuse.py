"""The docs' Langfuse section, "3. Run both callbacks together" (tests/testdata/seed-dunetrace-docs.txt),
verbatim between the markers (indented as Python needs; the docs' text lost its indentation): a
LangGraph prebuilt ReAct agent on the real ``ChatOpenAI`` pointed at a fake OpenAI server
(FAKE_OPENAI_BASE_URL), with our DunetraceCallbackHandler and Langfuse's real LangChain handler
(LANGFUSE_* pointing at the fake Langfuse server).

LC_REVERSED=1 first invokes the agent with Langfuse's handler listed first (before the docs' order:
the handlers end in the order they are listed, so the context they restore leaks one of their spans
into the caller's context, and a Langfuse-first trace must start from a clean one).

LC_AUTO=1 turns on auto-instrumentation first (the docs' block makes its own client; what
``auto_instrument`` instruments is process-wide and records into whichever run is current), so
the openai and httpx instrumentations see the same calls the handler records.

Result: the run id, the Langfuse trace id, the answer, the tool's calls."""

# ruff: noqa: E402, I001
import json

from _common import env
from _common import result as emit
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import create_react_agent

calls: list[str] = []


@tool
def lookup_weather(city: str) -> str:
    """Current weather for a city."""
    calls.append(city)
    return json.dumps({"city": city, "forecast": "sunny " + env("LC_MARKER")})


llm = ChatOpenAI(model="gpt-4o-mini", api_key="sk-fake-key", base_url=env("FAKE_OPENAI_BASE_URL"), max_retries=0)
agent = create_react_agent(llm, [lookup_weather], prompt="You are a weather assistant.")
query = "What's the weather in Paris? " + env("LC_MARKER")

if env("LC_AUTO") == "1":
    from dunetrace.auto import auto_instrument

    auto_instrument()

reversed_ids: dict[str, str | None] = {}
if env("LC_REVERSED") == "1":  # first, the same with Langfuse's handler listed first
    from dunetrace import Dunetrace
    from dunetrace.integrations.langchain import DunetraceCallbackHandler
    from langfuse import get_client
    from langfuse.langchain import CallbackHandler

    first_dt = Dunetrace()
    first_cb = DunetraceCallbackHandler(first_dt, agent_id="my-agent", model="gpt-4o-mini")
    first_lf = CallbackHandler()
    agent.invoke({"messages": [("human", query)]}, config={"callbacks": [first_lf, first_cb]})
    first_dt.shutdown(timeout=5)
    get_client().flush()
    reversed_ids = {"dt_run_id": first_cb.last_run_id, "lf_trace_id": first_lf.last_trace_id}

# fmt: off
# --- the docs, verbatim ---
from dunetrace import Dunetrace
from dunetrace.integrations.langchain import DunetraceCallbackHandler
from langfuse.langchain import CallbackHandler as LangfuseCallbackHandler # v4+
dt = Dunetrace()
dt_cb = DunetraceCallbackHandler(dt, agent_id="my-agent", model="gpt-4o-mini")
lf_cb = LangfuseCallbackHandler() # reads LANGFUSE_* from env
result = agent.invoke(
    {"messages": [("human", query)]},
    config={"callbacks": [dt_cb, lf_cb]},
)
dt.shutdown(timeout=5)
import langfuse as lf_module
lf_module.get_client().flush() # ensure trace is uploaded
dt_run_id = dt_cb.last_run_id # e.g. "b5ed23be-e4f0-43bc-..."
lf_trace_id = lf_cb.last_trace_id # e.g. "b5ed23bee4f043bc..." (same UUID, no dashes)
# --- end of the docs ---
# fmt: on

emit(
    "lc_docs_langfuse",
    dt_run_id=dt_run_id,
    lf_trace_id=lf_trace_id,
    answer=result["messages"][-1].content,
    tool_calls=calls,
    reversed=reversed_ids,
)
