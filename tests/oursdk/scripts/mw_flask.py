"""DunetraceWSGIMiddleware on a real Flask app served by werkzeug's threaded server on 127.0.0.1,
called over real sockets with ``requests``: a run per request, get_current_run() in the view and
in a streamed body, environ["dunetrace.run"], Flask's handled 500, a 4xx, the docs'
get_current_run() helper, a client that leaves mid-stream, two requests at once.

Env: MW_AGENT (the agent id). Result: the run ids each route saw, by route."""

# ruff: noqa: I001
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
from _common import current_run, env, get_together, one_step, result
from dunetrace import Dunetrace, DunetraceWSGIMiddleware
from flask import Flask, Response, abort, jsonify, request, stream_with_context
from werkzeug.serving import make_server

# fmt: off
# --- the docs' get_current_run() block ---
from dunetrace import get_current_run

def some_helper():
    run = get_current_run()
    if run:
        run.tool_called("cache_lookup")
        result = cache.get(key)
        run.tool_responded("cache_lookup", success=result is not None)
        return result
# --- end of the docs ---
# fmt: on

cache = {"greeting": "hello"}
key = "greeting"

AGENT = env("MW_AGENT")
dt = Dunetrace()
seen: dict[str, Any] = {"stream_steps": [], "helper_outside": some_helper()}
barrier = threading.Barrier(2, timeout=10)

app = Flask(__name__)
app.wsgi_app = DunetraceWSGIMiddleware(app.wsgi_app, dt=dt, agent_id=AGENT)  # type: ignore[method-assign]


@app.get("/ask")
def ask() -> Any:
    run = current_run()
    run.llm_called("gpt-4o", prompt_tokens=12, prompt="what is the capital of France?")
    run.llm_responded(completion_tokens=3, output="Paris")
    return jsonify(run_id=run.run_id, same=request.environ["dunetrace.run"] is run)


@app.get("/helper")
def helper() -> Any:
    run = current_run()
    return jsonify(run_id=run.run_id, value=some_helper())


@app.get("/boom")
def boom() -> Any:
    seen["boom"] = one_step(current_run()).run_id
    raise RuntimeError("the view failed")  # Flask catches it and answers 500


@app.get("/missing")
def missing() -> Any:
    seen["missing"] = one_step(current_run()).run_id
    abort(404)


def _parts(count: int, pause: float) -> Iterator[str]:
    run = get_current_run()  # iterated by the server after the view returned
    for index in range(count):
        seen["stream_steps"].append(run is not None and run is get_current_run())
        assert run is not None
        run.tool_called("stream-part", {"index": index})
        run.tool_responded("stream-part", output=f"part {index}")
        yield f"part {index}\n"
        time.sleep(pause)


@app.get("/stream")
def stream() -> Any:
    seen["stream"] = current_run().run_id
    return Response(stream_with_context(_parts(3, 0.02)), mimetype="text/plain")


@app.get("/stream-slow")
def stream_slow() -> Any:
    seen["stream_slow"] = current_run().run_id
    return Response(_parts(400, 0.02), mimetype="text/plain")


@app.get("/together/<tag>")
def together(tag: str) -> Any:
    run = current_run()
    run.tool_called(f"work-{tag}", {"tag": tag})
    barrier.wait()  # both requests are in flight here, each in its own server thread
    run.tool_responded(f"work-{tag}", output=f"done {tag}")
    run.llm_called(f"model-{tag}", prompt_tokens=5)
    run.llm_responded(completion_tokens=2, output=f"answer {tag}")
    return jsonify(run_id=run.run_id, current_is_own=get_current_run() is run)


server = make_server("127.0.0.1", 0, app, threaded=True)
port = server.server_port
thread = threading.Thread(target=server.serve_forever, name="werkzeug", daemon=True)
thread.start()
base = f"http://127.0.0.1:{port}"

responses: dict[str, Any] = {}
with requests.Session() as http:
    for route in ("ask", "helper", "boom", "missing", "stream"):
        reply = http.get(f"{base}/{route}", timeout=10)
        body = reply.json() if route in ("ask", "helper") else reply.text if route == "stream" else None
        responses[route] = {"status": reply.status_code, "body": body}

# The client leaves after the first chunk of a long stream: the server's write fails and it
# closes the response iterable before it is exhausted.
with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
    conn.sendall(b"GET /stream-slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    responses["stream_slow_first"] = conn.recv(4096).split(b"\r\n", 1)[0].decode()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # reset, not FIN
deadline = time.monotonic() + 15
while len(seen["stream_steps"]) < 403 and time.monotonic() < deadline:
    before = len(seen["stream_steps"])
    time.sleep(0.3)
    if len(seen["stream_steps"]) == before:
        break  # the server stopped iterating

together_replies = get_together(base, ("a", "b"))

server.shutdown()
thread.join(timeout=15)
dt.shutdown(timeout=10)

result("mw_flask", responses=responses, seen=seen, together=together_replies, outside=get_current_run() is None)
