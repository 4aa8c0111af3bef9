"""dt.auto_instrument() over the real openai, anthropic, httpx and requests clients against the fake
OpenAI (FAKE_OPENAI_BASE_URL) and Anthropic (FAKE_ANTHROPIC_BASE_URL) servers.

AUTO_MODE: ``all`` (``dt.auto_instrument()``, twice), ``llm`` (``["openai", "anthropic"]``) or
``http`` (``["httpx", "requests"]``). One openai call is made before any run (it must not be
recorded); then, inside ``dt.run(AUTO_AGENT)``: openai twice (a tool call, then an answer), openai
streamed once (with usage), anthropic twice (a tool use, then an answer), a raw ``httpx`` POST to
the fake's /v1/chat/completions, a raw ``requests`` POST to the fake's /v1/messages, and a
``requests`` GET of a non-LLM URL. AUTO_MARKER is in every prompt.

Result: the run id and the answers the clients got."""

from __future__ import annotations

import httpx
import requests
from _common import env, result
from anthropic import Anthropic
from dunetrace import Dunetrace
from openai import OpenAI

MODE = env("AUTO_MODE", "all")
MARKER = env("AUTO_MARKER")

dt = Dunetrace()
if MODE == "all":
    dt.auto_instrument()
    dt.auto_instrument()  # idempotent
elif MODE == "llm":
    dt.auto_instrument(["openai", "anthropic"])
else:
    dt.auto_instrument(["httpx", "requests"])

openai_client = OpenAI(base_url=env("FAKE_OPENAI_BASE_URL"), api_key="sk-fake-key", max_retries=0)
anthropic_client = Anthropic(base_url=env("FAKE_ANTHROPIC_BASE_URL"), api_key="sk-ant-fake", max_retries=0)
prompt = [{"role": "user", "content": f"What is the weather? {MARKER}"}]
tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}

outside = openai_client.chat.completions.create(model="gpt-outside", messages=prompt)
answers: list[str | None] = [outside.choices[0].message.content]

with dt.run(env("AUTO_AGENT")) as run:
    first = openai_client.chat.completions.create(model="gpt-4o", messages=prompt, tools=[tool])
    answers.append(first.choices[0].finish_reason)
    second = openai_client.chat.completions.create(model="gpt-4o", messages=prompt)
    answers.append(second.choices[0].message.content)
    stream = openai_client.chat.completions.create(
        model="gpt-4o-stream", messages=prompt, stream=True, stream_options={"include_usage": True}
    )
    answers.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
    used = anthropic_client.messages.create(
        model="claude-sonnet",
        max_tokens=50,
        messages=prompt,
        tools=[{"name": "lookup", "input_schema": {"type": "object"}}],
    )
    answers.append(used.stop_reason)
    said = anthropic_client.messages.create(model="claude-sonnet", max_tokens=50, messages=prompt)
    answers.append(said.content[0].text)  # type: ignore[union-attr]
    raw = httpx.post(
        env("FAKE_OPENAI_BASE_URL") + "/chat/completions",
        json={"model": "raw-httpx-model", "messages": prompt},
        timeout=10,
    )
    answers.append(raw.json()["choices"][0]["message"]["content"])
    raw2 = requests.post(
        env("FAKE_ANTHROPIC_BASE_URL") + "/v1/messages",
        json={"model": "raw-requests-model", "max_tokens": 50, "messages": prompt},
        timeout=10,
    )
    answers.append(raw2.json()["content"][0]["text"])
    answers.append(str(requests.get(env("FAKE_ANTHROPIC_BASE_URL") + "/health", timeout=10).status_code))

dt.shutdown(timeout=10)
result("auto_clients", run_id=run.run_id, answers=answers)
