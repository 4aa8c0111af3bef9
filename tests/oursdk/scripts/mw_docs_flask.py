"""The docs' "Flask / WSGI" block, verbatim between the markers, with a route (added after the
block) that calls the real ``openai`` client against a fake OpenAI server (FAKE_OPENAI_BASE_URL),
served by werkzeug on 127.0.0.1.

Result: per request, the reply and the run id the route saw."""

# ruff: noqa: E402, I001
# fmt: off
# --- the docs, verbatim ---
from flask import Flask
from dunetrace import Dunetrace, DunetraceWSGIMiddleware

dt = Dunetrace()
dt.auto_instrument()

app = Flask(__name__)
app.wsgi_app = DunetraceWSGIMiddleware(app.wsgi_app, dt=dt, agent_id="my-api")
# --- end of the docs ---
# fmt: on

import threading
from typing import Any

import requests
from _common import env, result
from dunetrace import get_current_run
from flask import jsonify, request
from openai import OpenAI
from werkzeug.serving import make_server

openai_client = OpenAI(base_url=env("FAKE_OPENAI_BASE_URL"), api_key="sk-fake-key", max_retries=0)


@app.post("/chat")
def chat() -> Any:
    run = get_current_run()
    resp = openai_client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": request.args["query"]}]
    )
    return jsonify(answer=resp.choices[0].message.content, run_id=run.run_id if run else None)


server = make_server("127.0.0.1", 0, app, threaded=True)
thread = threading.Thread(target=server.serve_forever, daemon=True)
thread.start()
replies = []
for query in (env("MW_QUERY_1"), env("MW_QUERY_2")):
    reply = requests.post(f"http://127.0.0.1:{server.server_port}/chat", params={"query": query}, timeout=15)
    replies.append({"status": reply.status_code, "body": reply.json()})
server.shutdown()
thread.join(timeout=15)
dt.shutdown(timeout=10)
result("mw_docs_flask", replies=replies)
