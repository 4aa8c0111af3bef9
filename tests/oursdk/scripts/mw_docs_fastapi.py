"""The docs' "FastAPI / ASGI" block (../shared/spec/seed-dunetrace-docs.txt), verbatim between the
markers (indented as Python needs; the docs' text lost its indentation), served by uvicorn on
127.0.0.1 with the real ``openai`` client pointed at a fake OpenAI server (FAKE_OPENAI_BASE_URL).
An inner ASGI middleware (added after the block, nearest the routes) only records the run of each
request: request.state.dunetrace_run and get_current_run() as the handler sees them.

Result: per request, the reply and the run ids seen."""

# ruff: noqa: E402, I001, F841
# fmt: off
# --- the docs, verbatim ---
from fastapi import FastAPI
from dunetrace import Dunetrace, DunetraceASGIMiddleware, get_current_run

dt = Dunetrace()
dt.auto_instrument()

app = FastAPI()
app.add_middleware(
    DunetraceASGIMiddleware,
    dt=dt, agent_id="my-api", model="gpt-4o",
)

@app.post("/chat")
async def chat(query: str):
    run = get_current_run() # run opened by middleware
    resp = await openai_client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": query}],
    )
    return resp.choices[0].message.content
# --- end of the docs ---
# fmt: on

import socket
import threading
import time
from typing import Any

import requests
import uvicorn
from _common import env, result
from openai import AsyncOpenAI
from starlette.middleware import Middleware

openai_client = AsyncOpenAI(base_url=env("FAKE_OPENAI_BASE_URL"), api_key="sk-fake-key", max_retries=0)
recorded: list[dict[str, Any]] = []


class RecordRun:
    """Innermost: what the route will see (its state's run and the current run)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            run = get_current_run()
            state_run = scope.get("state", {}).get("dunetrace_run")
            recorded.append({"run_id": run.run_id if run else None, "same": state_run is run})
        await self.app(scope, receive, send)


app.user_middleware.append(Middleware(RecordRun))

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.bind(("127.0.0.1", 0))
port = sock.getsockname()[1]
server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
thread.start()
deadline = time.monotonic() + 15
while not server.started and time.monotonic() < deadline and thread.is_alive():
    time.sleep(0.02)

replies = []
for query in (env("MW_QUERY_1"), env("MW_QUERY_2")):
    reply = requests.post(f"http://127.0.0.1:{port}/chat", params={"query": query}, timeout=15)
    replies.append({"status": reply.status_code, "body": reply.json()})

server.should_exit = True
thread.join(timeout=15)
dt.shutdown(timeout=10)
result("mw_docs_fastapi", replies=replies, recorded=recorded)
