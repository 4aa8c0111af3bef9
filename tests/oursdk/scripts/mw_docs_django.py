"""The docs' "Django" block (its wsgi.py), verbatim between the markers, over minimal settings and
a view that calls the real ``openai`` client against a fake OpenAI server (FAKE_OPENAI_BASE_URL),
served by the standard library's wsgiref on 127.0.0.1.

Result: per request, the reply and the run id the view saw."""

# ruff: noqa: E402, I001
import django
from django.conf import settings
from django.http import HttpRequest, JsonResponse
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

# fmt: off
# --- the docs, verbatim ---
# wsgi.py
from dunetrace import Dunetrace, DunetraceWSGIMiddleware
from django.core.wsgi import get_wsgi_application

dt = Dunetrace()
dt.auto_instrument()

application = DunetraceWSGIMiddleware(get_wsgi_application(), dt=dt, agent_id="django-api")
# --- end of the docs ---
# fmt: on

import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import requests
from _common import env, result
from dunetrace import get_current_run
from openai import OpenAI

openai_client = OpenAI(base_url=env("FAKE_OPENAI_BASE_URL"), api_key="sk-fake-key", max_retries=0)


def chat(request: HttpRequest) -> JsonResponse:
    run = get_current_run()
    resp = openai_client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": request.GET["query"]}]
    )
    return JsonResponse({"answer": resp.choices[0].message.content, "run_id": run.run_id if run else None})


urlpatterns = [path("chat", chat)]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


server = make_server("127.0.0.1", 0, application, handler_class=QuietHandler)
thread = threading.Thread(target=server.serve_forever, daemon=True)
thread.start()
replies = []
for query in (env("MW_QUERY_1"), env("MW_QUERY_2")):
    reply = requests.get(f"http://127.0.0.1:{server.server_port}/chat", params={"query": query}, timeout=15)
    replies.append({"status": reply.status_code, "body": reply.json()})
server.shutdown()
thread.join(timeout=15)
dt.shutdown(timeout=10)
result("mw_docs_django", replies=replies)
