"""DunetraceWSGIMiddleware around Django's WSGI application (minimal settings, this module is the
URLconf), served by the standard library's wsgiref on 127.0.0.1 and called over real sockets with
``requests``: a run per request, get_current_run() in the views, Django's own 500 for a view
that raised (DEBUG off), a 404, two requests at once.

Env: MW_AGENT (the agent id). Result: the run ids each view saw, by view."""

from __future__ import annotations

import socketserver
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import django
import requests
from _common import current_run, env, get_together, one_step, result
from django.conf import settings
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    SECRET_KEY="mw-django-test-key-not-a-secret",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["127.0.0.1"],
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
    LOGGING_CONFIG=None,
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from dunetrace import Dunetrace, DunetraceWSGIMiddleware, get_current_run  # noqa: E402

AGENT = env("MW_AGENT")
dt = Dunetrace()
application = DunetraceWSGIMiddleware(get_wsgi_application(), dt=dt, agent_id=AGENT)
seen: dict[str, Any] = {}
barrier = threading.Barrier(2, timeout=10)


def ask(request: HttpRequest) -> JsonResponse:
    run = current_run()
    run.llm_called("gpt-4o", prompt_tokens=12, prompt="what is the capital of France?")
    run.llm_responded(completion_tokens=3, output="Paris")
    return JsonResponse({"run_id": run.run_id, "same": request.META["dunetrace.run"] is run})


def boom(request: HttpRequest) -> JsonResponse:
    seen["boom"] = one_step(current_run()).run_id
    raise RuntimeError("the view failed")  # Django catches it and answers 500


def missing(request: HttpRequest) -> JsonResponse:
    seen["missing"] = one_step(current_run()).run_id
    raise Http404("no such thing")


def together(request: HttpRequest, tag: str) -> JsonResponse:
    run = current_run()
    run.tool_called(f"work-{tag}", {"tag": tag})
    barrier.wait()  # both requests are in flight here, each in its own server thread
    run.tool_responded(f"work-{tag}", output=f"done {tag}")
    return JsonResponse({"run_id": run.run_id, "current_is_own": get_current_run() is run})


urlpatterns = [
    path("ask", ask),
    path("boom", boom),
    path("missing", missing),
    path("together/<str:tag>", together),
]


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


server = make_server("127.0.0.1", 0, application, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
port = server.server_port
thread = threading.Thread(target=server.serve_forever, name="wsgiref", daemon=True)
thread.start()
base = f"http://127.0.0.1:{port}"

responses: dict[str, Any] = {}
with requests.Session() as http:
    for route in ("ask", "boom", "missing"):
        reply = http.get(f"{base}/{route}", timeout=10)
        responses[route] = {"status": reply.status_code, "body": reply.json() if route == "ask" else None}

together_replies = get_together(base, ("a", "b"))

server.shutdown()
thread.join(timeout=15)
dt.shutdown(timeout=10)

result("mw_django", responses=responses, seen=seen, together=together_replies, outside=get_current_run() is None)
