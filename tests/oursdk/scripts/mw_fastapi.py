"""DunetraceASGIMiddleware on a real FastAPI app served by uvicorn on 127.0.0.1, called over real
sockets with ``requests``: a run per request, get_current_run() in async and sync (threadpool)
endpoints and in a streamed body, request.state.dunetrace_run, errors, 4xx/5xx, a client that
leaves mid-stream, two requests at once; then, in-process, a cancelled request and the scopes
that pass through (lifespan is also exercised by uvicorn).

Env: MW_AGENT (the agent id). Result: the run ids each route saw, by route."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import requests
import uvicorn
from _common import current_run, env, get_together, one_step, result
from dunetrace import Dunetrace, DunetraceASGIMiddleware, get_current_run
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse

AGENT = env("MW_AGENT")
dt = Dunetrace()
seen: dict[str, Any] = {"lifespan": [], "stream_steps": []}
together_arrived = 0
together_both = asyncio.Event()


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    seen["lifespan"].append(("startup", get_current_run() is None))
    yield
    seen["lifespan"].append(("shutdown", get_current_run() is None))


app = FastAPI(lifespan=lifespan)
app.add_middleware(DunetraceASGIMiddleware, dt=dt, agent_id=AGENT, model="gpt-4o")


@app.get("/ask")
async def ask(request: Request) -> dict[str, Any]:
    run = current_run()
    run.llm_called("gpt-4o", prompt_tokens=12, prompt="what is the capital of France?")
    await asyncio.sleep(0)
    run.llm_responded(completion_tokens=3, output="Paris")
    return {"run_id": run.run_id, "same": request.state.dunetrace_run is run}


@app.get("/sync")
def sync_endpoint(request: Request) -> dict[str, Any]:  # FastAPI runs it in its threadpool
    run = current_run()
    run.tool_called("sync-lookup", {"id": 7})
    run.tool_responded("sync-lookup", output="row 7")
    return {"run_id": run.run_id, "same": request.state.dunetrace_run is run, "thread": threading.current_thread().name}


@app.get("/boom")
async def boom() -> None:
    seen["boom"] = one_step(current_run()).run_id
    raise RuntimeError("the handler failed")


@app.get("/missing")
async def missing() -> None:
    seen["missing"] = one_step(current_run()).run_id
    raise HTTPException(status_code=404, detail="no such thing")


@app.get("/unavailable")
async def unavailable() -> JSONResponse:
    seen["unavailable"] = one_step(current_run()).run_id
    return JSONResponse({"error": "try later"}, status_code=503)


async def _chunks(run: Any, count: int, pause: float) -> AsyncIterator[bytes]:
    for index in range(count):
        current = get_current_run()
        seen["stream_steps"].append(current is run)
        run.tool_called("stream-part", {"index": index})
        run.tool_responded("stream-part", output=f"part {index}")
        yield f"part {index}\n".encode()
        await asyncio.sleep(pause)


@app.get("/stream")
async def stream() -> StreamingResponse:
    run = current_run()
    seen["stream"] = run.run_id
    return StreamingResponse(_chunks(run, 3, 0.05), media_type="text/plain")


@app.get("/stream-slow")
async def stream_slow() -> StreamingResponse:
    run = current_run()
    seen["stream_slow"] = run.run_id
    return StreamingResponse(_chunks(run, 200, 0.05), media_type="text/plain")


@app.get("/together/{tag}")
async def together(tag: str) -> dict[str, Any]:
    global together_arrived
    run = current_run()
    run.tool_called(f"work-{tag}", {"tag": tag})
    together_arrived += 1
    if together_arrived == 2:
        together_both.set()
    await asyncio.wait_for(together_both.wait(), timeout=10)  # both requests are in flight here
    run.tool_responded(f"work-{tag}", output=f"done {tag}")
    run.llm_called(f"model-{tag}", prompt_tokens=5)
    run.llm_responded(completion_tokens=2, output=f"answer {tag}")
    return {"run_id": run.run_id, "current_is_own": get_current_run() is run}


def serve() -> tuple[uvicorn.Server, threading.Thread, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("uvicorn did not start")
        time.sleep(0.02)
    return server, thread, port


def in_process_checks() -> dict[str, Any]:
    """A cancelled request (CancelledError through the middleware) and the scopes that pass
    through, by calling the middleware directly."""
    out: dict[str, Any] = {}

    async def waits_forever(scope: Any, receive: Any, send: Any) -> None:
        run = get_current_run()
        out["cancelled_run"] = run.run_id if run else None
        out["cancelled_state"] = scope["state"]["dunetrace_run"] is run
        if run is not None:
            run.tool_called("wait", {"for": "ever"})  # open when the request is cancelled: ends with the run
        await asyncio.sleep(30)

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(30)
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        return None

    async def cancelled() -> None:
        middleware = DunetraceASGIMiddleware(waits_forever, dt=dt, agent_id=AGENT)
        scope = {"type": "http", "method": "POST", "path": "/chat", "headers": [], "query_string": b"q=secret"}
        task = asyncio.create_task(middleware(scope, receive, send))
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            out["cancel_propagated"] = True
        out["after_cancel"] = get_current_run() is None

    asyncio.run(cancelled())

    passed: list[Any] = []

    async def records(scope: Any, receive: Any, send: Any) -> None:
        passed.append((scope["type"], get_current_run() is None, "state" in scope, scope))

    async def other_scopes() -> None:
        middleware = DunetraceASGIMiddleware(records, dt=dt, agent_id=AGENT)
        for kind in ("websocket", "lifespan"):
            scope = {"type": kind, "path": "/ws"} if kind == "websocket" else {"type": kind}
            await middleware(scope, receive, send)
            out[kind] = [passed[-1][:3], passed[-1][3] is scope, scope == passed[-1][3]]

    asyncio.run(other_scopes())
    return out


server, thread, port = serve()
base = f"http://127.0.0.1:{port}"
responses: dict[str, Any] = {}
with requests.Session() as http:
    for route in ("ask", "sync", "boom", "missing", "unavailable"):
        reply = http.get(f"{base}/{route}", timeout=10)
        responses[route] = {"status": reply.status_code, "body": reply.json() if route in ("ask", "sync") else None}
    reply = http.get(f"{base}/stream", timeout=10)
    responses["stream"] = {"status": reply.status_code, "body": reply.text}

# The client leaves after the first chunk of a long stream.
with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
    conn.sendall(b"GET /stream-slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = conn.recv(4096)
    responses["stream_slow_first"] = first.split(b"\r\n", 1)[0].decode()
    time.sleep(0.1)
time.sleep(0.5)  # the server sees the disconnect and the app stops streaming

together_replies = get_together(base, ("a", "b"))

server.should_exit = True
thread.join(timeout=15)
checks = in_process_checks()
dt.shutdown(timeout=10)

result(
    "mw_fastapi",
    responses=responses,
    seen=seen,
    together=together_replies,
    checks=checks,
    outside=get_current_run() is None,
)
