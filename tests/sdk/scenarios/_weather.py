"""The weather tool loop of scenarios a (plain) and h (with the SDK's OTel exporter): an OpenAI
tool-calling loop inside `with dt.run()`, each tool call reported through the documented hooks
run.tool_called / run.tool_responded. The fake OpenAI server's script decides how often it loops."""

import json
import time
from typing import Any

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


def weather_loop(dt: Any, oai: Any, agent_id: str) -> tuple[Any, int, int, str | None]:
    """(the run context, LLM calls, tool calls, the final answer)."""
    llm_calls = tool_calls = 0
    answer = None
    with dt.run(
        agent_id,
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
    return run, llm_calls, tool_calls, answer
