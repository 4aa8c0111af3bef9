"""Scenario (d): a Flask app wrapped in DunetraceWSGIMiddleware, as the docs show it
(app.wsgi_app = DunetraceWSGIMiddleware(app.wsgi_app, dt=dt, agent_id=...)), served by werkzeug on 127.0.0.1 (a
free port, threaded) and called over real HTTP:

    GET /lookup?city=Paris   one tool call (its api_key argument is redacted by the SDK) through get_current_run()
    GET /boom                one tool call, then RuntimeError. Flask turns it into a 500 inside app.wsgi_app, so
                             the middleware sees a normal return: the SDK sends run.completed (final_answer)

Prints: {"scenario": "d_flask_wsgi", "agent_id", "runs": {"lookup": id, "boom": id},
"statuses": {"lookup": 200, "boom": 500}}.
"""

import threading
import urllib.error
import urllib.request

from _common import client_kwargs, emit_result, setup_logging
from dunetrace import Dunetrace, DunetraceWSGIMiddleware, get_current_run
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

setup_logging()
AGENT_ID = "flask-agent"
runs: dict[str, str] = {}

dt = Dunetrace(**client_kwargs())
dt.auto_instrument()
app = Flask(__name__)
app.wsgi_app = DunetraceWSGIMiddleware(app.wsgi_app, dt=dt, agent_id=AGENT_ID)


@app.get("/lookup")
def lookup():
    run = get_current_run()
    assert run is not None and request.environ["dunetrace.run"] is run
    runs["lookup"] = run.run_id
    city = request.args.get("city", "")
    run.tool_called("geo_lookup", {"city": city, "api_key": "key-the-sdk-must-redact"})
    run.tool_responded("geo_lookup", success=True, output='{"lat": 48.85, "lon": 2.35}', latency_ms=12)
    return jsonify({"city": city})


@app.get("/boom")
def boom():
    run = get_current_run()
    runs["boom"] = run.run_id
    run.tool_called("geo_lookup", {"city": "Atlantis"})
    raise RuntimeError("geo service down")


server = make_server("127.0.0.1", 0, app, threaded=True)
thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
thread.start()


def call(path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}{path}", timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code


statuses = {"lookup": call("/lookup?city=Paris"), "boom": call("/boom")}
server.shutdown()
thread.join(timeout=10)

emit_result("d_flask_wsgi", agent_id=AGENT_ID, runs=runs, statuses=statuses)
dt.shutdown(timeout=10)
