"""Scenario (b): DunetraceCallbackHandler on a small LangChain tool-calling agent (langchain-core +
langchain-openai: ChatOpenAI.bind_tools, a @tool, and a loop that runs the model's tool calls until it answers).

Invoked as the docs say: agent.invoke(input, config={"callbacks": [callback]}), then callback.last_run_id is the
Dunetrace run id. The test scripts the fake OpenAI server (four identical get_weather calls, then an answer).

Prints: {"scenario": "b_langchain", "run_id" (= callback.last_run_id), "agent_id", "llm_calls", "tool_calls",
"answer"}.
"""

import json

from _common import FAKE_OPENAI_KEY, client_kwargs, emit_result, env, setup_logging
from dunetrace import Dunetrace
from dunetrace.integrations.langchain import DunetraceCallbackHandler
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

setup_logging()
AGENT_ID = "lc-weather-agent"
counts = {"llm": 0, "tool": 0}


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
    messages = [SystemMessage("You are a weather assistant."), HumanMessage(inputs["input"])]
    for _ in range(10):  # bounded: the fake's script ends the loop
        ai = llm_with_tools.invoke(messages, config=config)
        counts["llm"] += 1
        messages.append(ai)
        if not ai.tool_calls:
            return {"output": ai.content}
        for call in ai.tool_calls:
            messages.append(TOOLS[call["name"]].invoke(call, config=config))  # a ToolMessage
            counts["tool"] += 1
    return {"output": "gave up"}


agent = RunnableLambda(agent_loop).with_config(run_name="weather_agent")
dt = Dunetrace(**client_kwargs())
callback = DunetraceCallbackHandler(dt, agent_id=AGENT_ID, model="gpt-4o-mini")
result = agent.invoke({"input": "What's the weather in Paris?"}, config={"callbacks": [callback]})

emit_result(
    "b_langchain",
    run_id=callback.last_run_id,
    agent_id=AGENT_ID,
    llm_calls=counts["llm"],
    tool_calls=counts["tool"],
    answer=result["output"],
)
dt.shutdown(timeout=10)
