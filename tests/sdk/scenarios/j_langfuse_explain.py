"""Scenario (j): the Langfuse walk-through of the Dunetrace docs ("Run both callbacks together", then "Call the
explain endpoint"), as written there: a LangChain tool-calling agent invoked with
config={"callbacks": [dt_cb, lf_cb]}, where dt_cb is Dunetrace's DunetraceCallbackHandler and lf_cb is Langfuse's
langfuse.langchain.CallbackHandler (Langfuse SDK v3+, pinned 5.x in requirements.txt; it reads LANGFUSE_PUBLIC_KEY,
LANGFUSE_SECRET_KEY and LANGFUSE_HOST from the environment: the test points them at its fake Langfuse). Then
dt.shutdown(timeout=5), langfuse.get_client().flush(), and the two ids the doc passes on: dt_cb.last_run_id (the
Dunetrace run) and lf_cb.last_trace_id (the Langfuse trace). The test scripts the fake OpenAI server (four
identical get_weather calls, then an answer) and asks the daemon to explain the run's TOOL_LOOP with that trace id.

The agent takes the doc's input shape {"messages": [("human", query)]}; it is the same small loop as scenario (b)
(ChatOpenAI.bind_tools, a @tool, run the model's tool calls until it answers). Besides the doc's two ids it reports
LangChain's own root run id (the parent run id of the callbacks the agent's function is given), to check the doc's
claim that the two ids "represent the same run even though their formats differ".

Prints: {"scenario": "j_langfuse_explain", "dt_run_id" (= dt_cb.last_run_id), "lf_trace_id" (= lf_cb.last_trace_id),
"langchain_root_run_id", "agent_id", "llm_calls", "tool_calls", "answer"}.
"""

import json

import langfuse as lf_module
from _common import FAKE_OPENAI_KEY, client_kwargs, emit_result, env, setup_logging
from dunetrace import Dunetrace
from dunetrace.integrations.langchain import DunetraceCallbackHandler
from langchain_core.messages import SystemMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langfuse.langchain import CallbackHandler as LangfuseCallbackHandler

setup_logging()
AGENT_ID = "lf-weather-agent"
counts = {"llm": 0, "tool": 0}
seen: dict[str, str] = {}


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return json.dumps({"city": city, "forecast": "sunny", "temp_c": 21})


TOOLS = {"get_weather": get_weather}
llm = ChatOpenAI(
    model="gpt-4o-mini", api_key=FAKE_OPENAI_KEY, base_url=env("FAKE_OPENAI_BASE_URL"), max_retries=0, timeout=30
)
llm_with_tools = llm.bind_tools(list(TOOLS.values()))


def agent_loop(inputs: dict, config: RunnableConfig) -> dict:
    # The callbacks handed to this function are the children of the root run (this RunnableLambda's run).
    seen["root_run_id"] = str(config["callbacks"].parent_run_id)
    messages = [SystemMessage("You are a weather assistant."), *inputs["messages"]]
    for _ in range(10):  # bounded: the fake's script ends the loop
        ai = llm_with_tools.invoke(messages, config=config)
        counts["llm"] += 1
        messages.append(ai)
        if not ai.tool_calls:
            return {"messages": messages}
        for call in ai.tool_calls:
            messages.append(TOOLS[call["name"]].invoke(call, config=config))  # a ToolMessage
            counts["tool"] += 1
    return {"messages": messages}


agent = RunnableLambda(agent_loop).with_config(run_name="weather_agent")
query = "What's the weather in Paris?"

# --- the doc, step 3 ---
dt = Dunetrace(**client_kwargs())
dt_cb = DunetraceCallbackHandler(dt, agent_id=AGENT_ID, model="gpt-4o-mini")
lf_cb = LangfuseCallbackHandler()  # reads LANGFUSE_* from env

result = agent.invoke(
    {"messages": [("human", query)]},
    config={"callbacks": [dt_cb, lf_cb]},
)

dt.shutdown(timeout=5)
lf_module.get_client().flush()  # ensure trace is uploaded

dt_run_id = dt_cb.last_run_id
lf_trace_id = lf_cb.last_trace_id
# --- end of the doc's code ---

emit_result(
    "j_langfuse_explain",
    dt_run_id=dt_run_id,
    lf_trace_id=lf_trace_id,
    langchain_root_run_id=seen.get("root_run_id"),
    agent_id=AGENT_ID,
    llm_calls=counts["llm"],
    tool_calls=counts["tool"],
    answer=result["messages"][-1].content,
)
