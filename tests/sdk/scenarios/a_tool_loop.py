"""Scenario (a): a `with dt.run()` tool loop on the auto-instrumented openai client.

The fake OpenAI server (tests/fakes/llm_servers.py, in the test process) is scripted by the test; for the
expectations in tests/sdk/test_sdk_runs.py it asks for get_weather({"city": "Paris"}) four times, then answers.
The loop executes each tool call through the documented hooks run.tool_called / run.tool_responded.

Prints: {"scenario": "a_tool_loop", "run_id", "agent_id", "llm_calls", "tool_calls", "answer"}.
"""

from _common import FAKE_OPENAI_KEY, client_kwargs, emit_result, env, setup_logging
from _weather import weather_loop
from dunetrace import Dunetrace
from openai import OpenAI

setup_logging()
AGENT_ID = "weather-agent"

dt = Dunetrace(**client_kwargs())
dt.auto_instrument(["openai"])
oai = OpenAI(api_key=FAKE_OPENAI_KEY, base_url=env("FAKE_OPENAI_BASE_URL"), max_retries=0, timeout=30)

run, llm_calls, tool_calls, answer = weather_loop(dt, oai, AGENT_ID)

emit_result(
    "a_tool_loop", run_id=run.run_id, agent_id=AGENT_ID, llm_calls=llm_calls, tool_calls=tool_calls, answer=answer
)
dt.shutdown(timeout=10)
