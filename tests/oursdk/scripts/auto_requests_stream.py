"""dt.auto_instrument(["requests"]) and a raw ``requests`` POST with ``stream=True`` to the fake
OpenAI server's /v1/chat/completions (FAKE_OPENAI_BASE_URL), read line by line as an agent reads
server-sent events, inside one run.

Result: the run id and the text the agent put together from the stream."""

from __future__ import annotations

import json

import requests
from _common import env, result
from dunetrace import Dunetrace

dt = Dunetrace()
dt.auto_instrument(["requests"])
body = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": f"What is the weather? {env('AUTO_MARKER')}"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}
text = ""
with dt.run(env("AUTO_AGENT")) as run:
    url = env("FAKE_OPENAI_BASE_URL") + "/chat/completions"
    with requests.post(url, json=body, stream=True, timeout=10) as response:
        for line in response.iter_lines():
            if line.startswith(b"data: {"):
                chunk = json.loads(line[len(b"data: ") :])
                text += "".join(c["delta"].get("content") or "" for c in chunk["choices"])
    run.final_answer()

dt.shutdown(timeout=10)
result("auto_requests_stream", run_id=run.run_id, text=text)
