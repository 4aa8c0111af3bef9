"""Scenario (c): a FastAPI app with DunetraceASGIMiddleware and get_current_run(), as the docs show it
(dt.auto_instrument(), app.add_middleware(DunetraceASGIMiddleware, dt=dt, agent_id=..., model=...)), served by
uvicorn on 127.0.0.1 (a free port) and called over real HTTP, one request after the other:

    POST /chat?query=...   the docs' handler: AsyncOpenAI call (auto-instrumented), returns the model's answer
    GET  /items/7          one tool call through request.state.dunetrace_run (the same run as get_current_run())
    GET  /boom             one tool call, then RuntimeError -> 500 (the middleware sees the exception)

The fake OpenAI server answers /chat once. Prints: {"scenario": "c_fastapi_asgi", "agent_id",
"runs": {"chat": id, "items": id, "boom": id}, "statuses": {"chat": 200, "items": 200, "boom": 500}}.
"""

import socket
import threading
import time
import urllib.error
import urllib.request

import uvicorn
from _common import FAKE_OPENAI_KEY, client_kwargs, emit_result, env, setup_logging
from dunetrace import Dunetrace, DunetraceASGIMiddleware, get_current_run
from fastapi import FastAPI, Request
from openai import AsyncOpenAI

setup_logging()
AGENT_ID = "fastapi-agent"
runs: dict[str, str] = {}

dt = Dunetrace(**client_kwargs())
dt.auto_instrument()
openai_client = AsyncOpenAI(api_key=FAKE_OPENAI_KEY, base_url=env("FAKE_OPENAI_BASE_URL"), max_retries=0, timeout=30)

app = FastAPI()
app.add_middleware(DunetraceASGIMiddleware, dt=dt, agent_id=AGENT_ID, model="gpt-4o")


@app.post("/chat")
async def chat(query: str):
    run = get_current_run()  # run opened by middleware
    runs["chat"] = run.run_id
    resp = await openai_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": query}])
    return resp.choices[0].message.content


@app.get("/items/{item_id}")
async def get_item(item_id: int, request: Request):
    run = request.state.dunetrace_run
    assert run is get_current_run()
    runs["items"] = run.run_id
    run.tool_called("db_query", {"table": "items", "id": item_id})
    row = {"id": item_id, "name": f"item-{item_id}"}
    run.tool_responded("db_query", success=True, output=str(row), latency_ms=3)
    return {"row": row}


@app.get("/boom")
def boom():
    run = get_current_run()
    runs["boom"] = run.run_id
    run.tool_called("db_query", {"table": "items"})
    raise RuntimeError("database exploded")


sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.bind(("127.0.0.1", 0))
port = sock.getsockname()[1]
server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off", access_log=False))
thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
thread.start()
deadline = time.monotonic() + 20
while not server.started:
    if time.monotonic() > deadline or not thread.is_alive():
        raise SystemExit("uvicorn did not start")
    time.sleep(0.05)


def call(method: str, path: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, data=b"" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code


statuses = {
    "chat": call("POST", "/chat?query=What%27s%20the%20weather%20in%20Paris%3F"),
    "items": call("GET", "/items/7"),
    "boom": call("GET", "/boom"),
}
server.should_exit = True
thread.join(timeout=10)

emit_result("c_fastapi_asgi", agent_id=AGENT_ID, runs=runs, statuses=statuses)
dt.shutdown(timeout=10)
