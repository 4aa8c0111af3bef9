"""Scenario (a): a `with dt.run()` tool loop on the auto-instrumented openai client.

The fake OpenAI server (tests/fakes/llm_servers.py, in the test process) is scripted by the test; for the
expectations in tests/sdk/test_sdk_runs.py it asks for get_weather({"city": "Paris"}) four times, then answers.
The loop executes each tool call through the documented hooks run.tool_called / run.tool_responded.

Prints: {"scenario": "a_tool_loop", "run_id", "agent_id", "llm_calls", "tool_calls", "answer"}.
"""

import json
import time

from _common import FAKE_OPENAI_KEY, client_kwargs, emit_result, env, setup_logging
from dunetrace import Dunetrace
from openai import OpenAI

setup_logging()
AGENT_ID = "weather-agent"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def get_weather(city: str) -> str:
    return json.dumps({"city": city, "forecast": "sunny", "temp_c": 21})


dt = Dunetrace(**client_kwargs())
dt.auto_instrument(["openai"])
oai = OpenAI(api_key=FAKE_OPENAI_KEY, base_url=env("FAKE_OPENAI_BASE_URL"), max_retries=0, timeout=30)

llm_calls = tool_calls = 0
answer = None
with dt.run(
    AGENT_ID,
    user_input="What's the weather in Paris?",
    system_prompt="You are a weather assistant.",
    model="gpt-4o",
    tools=["get_weather"],
) as run:
    messages = [
        {"role": "system", "content": "You are a weather assistant."},
        {"role": "user", "content": "What's the weather in Paris?"},
    ]
    for _ in range(10):  # bounded: the fake's script ends the loop
        response = oai.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
        llm_calls += 1
        message = response.choices[0].message
        if not message.tool_calls:
            answer = message.content
            run.final_answer()
            break
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            args = json.loads(call.function.arguments)
            run.tool_called(call.function.name, args)
            started = time.time()
            output = get_weather(**args)
            run.tool_responded(
                call.function.name, success=True, output=output, latency_ms=int((time.time() - started) * 1000)
            )
            tool_calls += 1
            messages.append({"role": "tool", "tool_call_id": call.id, "content": output})

emit_result(
    "a_tool_loop", run_id=run.run_id, agent_id=AGENT_ID, llm_calls=llm_calls, tool_calls=tool_calls, answer=answer
)
dt.shutdown(timeout=10)
