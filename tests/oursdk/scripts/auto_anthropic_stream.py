"""dt.auto_instrument() over the real anthropic client streaming from the fake Anthropic server
(FAKE_ANTHROPIC_BASE_URL): a tool use, then an answer, both with ``stream=True``, inside one run.

AUTO_MODE: ``llm`` (``["anthropic"]``: OpenLLMetry's anthropic instrumentation) or ``http``
(``["httpx"]``: the call read from the wire, its server-sent events).

Result: the run id and what the agent read from the two streams."""

from __future__ import annotations

from _common import env, result
from anthropic import Anthropic
from dunetrace import Dunetrace

MARKER = env("AUTO_MARKER")
dt = Dunetrace()
dt.auto_instrument(["anthropic"] if env("AUTO_MODE") == "llm" else ["httpx"])
client = Anthropic(base_url=env("FAKE_ANTHROPIC_BASE_URL"), api_key="sk-ant-fake", max_retries=0)
prompt = [{"role": "user", "content": f"What is the weather in Paris? {MARKER}"}]
tools = [{"name": "lookup_weather", "input_schema": {"type": "object"}}]

read: list[str] = []
with dt.run(env("AUTO_AGENT")) as run:
    for event in client.messages.create(
        model="claude-sonnet", max_tokens=50, messages=prompt, tools=tools, stream=True
    ):
        if event.type == "content_block_start":
            read.append(event.content_block.type)
        elif event.type == "message_delta":
            read.append(str(event.delta.stop_reason))
    text = ""
    for event in client.messages.create(model="claude-sonnet", max_tokens=50, messages=prompt, stream=True):
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            text += event.delta.text
    read.append(text)
    run.final_answer()

dt.shutdown(timeout=10)
result("auto_anthropic_stream", run_id=run.run_id, read=read)
