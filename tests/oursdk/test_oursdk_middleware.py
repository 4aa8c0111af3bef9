"""Our SDK's DunetraceASGIMiddleware / DunetraceWSGIMiddleware on real FastAPI (uvicorn), Flask
(werkzeug) and Django (wsgiref) apps, served on 127.0.0.1 and called over real sockets from
scripts in the stacks venv (tests/oursdk/scripts/mw_*.py), with the runs read back from a real
daemon's API.

The rules checked (sdk/python/src/dunetrace/middleware.py): one run per HTTP request, the agent's
id; completed with ``final_answer`` for a 2xx, ``completed`` for a 4xx; errored for an exception
(its class), a 5xx (``HTTPServerError``, Flask's and Django's handled 500s too), a client that
left mid-stream (``ClientDisconnected``) and a cancelled request (``CancelledError``); a streamed
response's steps belong to the run; two requests at once are two runs with their own steps; no
run for lifespan or websocket scopes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.llm_servers import FakeOpenAI, Reply
from tests.oursdk.env import SCRIPTS
from tests.oursdk.harness import run_script
from tests.sdk.harness import Api, event_counts
from tests.sidecar import TESTDATA, Sidecar

DOCS = TESTDATA / "seed-dunetrace-docs.txt"  # the docs our users read (../shared/spec), as the tests hold them


def _agent(framework: str) -> str:
    return f"mw-{framework}-{uuid.uuid4().hex[:8]}"


def _agent_runs(api: Api, agent: str) -> set[str]:
    return {r["run_id"] for r in api.json(f"/v1/runs?agent_id={agent}&limit=100")["runs"]}


def _outcome(run: Mapping[str, Any]) -> tuple[Any, ...]:
    """(agent, status, exit reason, the error type of run.errored or None)."""
    errored = [e["payload"] for e in run["events"] if e["event_type"] == "run.errored"]
    error_type = errored[0].get("error_type") if errored else None
    return run["agent_id"], run["status"], run["exit_reason"], error_type


def _failed_after_a_step(api: Api, run_id: str) -> tuple[Any, ...]:
    """The outcome of a run whose handler made one ``prepare`` tool call before it failed or refused."""
    run = api.wait_run(run_id)
    assert _names(run, "tool.called", "tool_name") == {"prepare"} and run["tool_calls"] == 1
    return _outcome(run)


def _names(run: Mapping[str, Any], event_type: str, key: str) -> set[str]:
    return {e["payload"][key] for e in run["events"] if e["event_type"] == event_type}


def _check_together(api: Api, agent: str, together: Mapping[str, Any], with_llm: bool) -> None:
    """Two requests in flight at once: two runs, each with only its own steps."""
    run_a, run_b = together["a"]["run_id"], together["b"]["run_id"]
    assert run_a != run_b
    assert together["a"]["current_is_own"] is True and together["b"]["current_is_own"] is True
    for tag, run_id in (("a", run_a), ("b", run_b)):
        run = api.wait_run(run_id)
        assert _outcome(run) == (agent, "completed", "final_answer", None)
        assert _names(run, "tool.called", "tool_name") == {f"work-{tag}"}
        assert run["tool_calls"] == 1
        if with_llm:
            assert _names(run, "llm.called", "model") == {f"model-{tag}"}
            assert run["llm_calls"] == 1


def test_fastapi_a_run_per_request_with_errors_streams_and_cancellation(
    oursdk_stacks_python: Path, oursdk_daemon: Sidecar
) -> None:
    agent = _agent("fastapi")
    out = run_script(oursdk_stacks_python, "mw_fastapi", oursdk_daemon, extra_env={"MW_AGENT": agent})
    r = out.result
    api = Api(oursdk_daemon)
    statuses = {route: reply["status"] for route, reply in r["responses"].items() if route != "stream_slow_first"}
    assert statuses == {"ask": 200, "sync": 200, "boom": 500, "missing": 404, "unavailable": 503, "stream": 200}
    assert r["responses"]["stream"]["body"] == "part 0\npart 1\npart 2\n"
    assert r["responses"]["stream_slow_first"] == "HTTP/1.1 200 OK"
    ask, sync = r["responses"]["ask"]["body"], r["responses"]["sync"]["body"]
    # request.state.dunetrace_run is get_current_run(), in the event loop and in the threadpool
    assert ask["same"] is True and sync["same"] is True
    assert sync["thread"].startswith("AnyIO worker thread")
    assert r["outside"] is True

    run = api.wait_run(ask["run_id"])
    assert _outcome(run) == (agent, "completed", "final_answer", None)
    assert (run["llm_calls"], run["tool_calls"], run["prompt_tokens"], run["completion_tokens"]) == (1, 0, 12, 3)
    run = api.wait_run(sync["run_id"])
    assert _outcome(run) == (agent, "completed", "final_answer", None)
    assert _names(run, "tool.called", "tool_name") == {"sync-lookup"}

    seen = r["seen"]
    assert _failed_after_a_step(api, seen["boom"]) == (agent, "errored", "error", "RuntimeError")
    assert _failed_after_a_step(api, seen["missing"]) == (agent, "completed", "completed", None)
    assert _failed_after_a_step(api, seen["unavailable"]) == (agent, "errored", "error", "HTTPServerError")

    # The stream's steps happen after the handler returned, inside the run, which ends with the body.
    run = api.wait_run(seen["stream"])
    assert _outcome(run) == (agent, "completed", "final_answer", None)
    assert run["tool_calls"] == 3
    # A client that left after the first chunk of a 200-part stream: the run is errored, short.
    run = api.wait_run(seen["stream_slow"])
    assert _outcome(run) == (agent, "errored", "error", "ClientDisconnected")
    assert 1 <= run["tool_calls"] < 200
    assert seen["stream_steps"][:4] == [True, True, True, True]  # get_current_run() in the generator
    assert len(seen["stream_steps"]) == 3 + run["tool_calls"]

    _check_together(api, agent, r["together"], with_llm=True)

    checks = r["checks"]
    assert (checks["cancelled_state"], checks["cancel_propagated"], checks["after_cancel"]) == (True, True, True)
    run = api.wait_run(checks["cancelled_run"])
    assert _outcome(run) == (agent, "errored", "error", "CancelledError")
    assert _names(run, "tool.called", "tool_name") == {"wait"}  # the step open when it was cancelled
    # lifespan and websocket scopes pass through untouched: the same scope, no state, no run
    assert checks["websocket"] == [["websocket", True, False], True, True]
    assert checks["lifespan"] == [["lifespan", True, False], True, True]
    assert seen["lifespan"] == [["startup", True], ["shutdown", True]]

    expected = {
        ask["run_id"],
        sync["run_id"],
        seen["boom"],
        seen["missing"],
        seen["unavailable"],
        seen["stream"],
        seen["stream_slow"],
        r["together"]["a"]["run_id"],
        r["together"]["b"]["run_id"],
        checks["cancelled_run"],
    }
    assert len(expected) == 10
    assert _agent_runs(api, agent) == expected  # one run per HTTP request, none for the other scopes


def test_flask_a_run_per_request_with_handled_500_streams_and_the_docs_helper(
    oursdk_stacks_python: Path, oursdk_daemon: Sidecar
) -> None:
    agent = _agent("flask")
    out = run_script(oursdk_stacks_python, "mw_flask", oursdk_daemon, extra_env={"MW_AGENT": agent})
    r = out.result
    api = Api(oursdk_daemon)
    statuses = {route: reply["status"] for route, reply in r["responses"].items() if route != "stream_slow_first"}
    assert statuses == {"ask": 200, "helper": 200, "boom": 500, "missing": 404, "stream": 200}
    assert r["responses"]["stream"]["body"] == "part 0\npart 1\npart 2\n"
    ask, helper = r["responses"]["ask"]["body"], r["responses"]["helper"]["body"]
    assert ask["same"] is True  # environ["dunetrace.run"] is get_current_run()
    assert r["outside"] is True

    run = api.wait_run(ask["run_id"])
    assert _outcome(run) == (agent, "completed", "final_answer", None)
    assert (run["llm_calls"], run["tool_calls"], run["prompt_tokens"], run["completion_tokens"]) == (1, 0, 12, 3)

    # The docs' get_current_run() helper: a cache_lookup tool call in the request's run, a hit;
    # outside any run it returns None and records nothing.
    assert helper["value"] == "hello"
    assert r["seen"]["helper_outside"] is None
    run = api.wait_run(helper["run_id"])
    assert _outcome(run) == (agent, "completed", "final_answer", None)
    assert (run["tool_calls"], run["errors"]) == (1, 0)
    assert _names(run, "tool.called", "tool_name") == {"cache_lookup"}
    assert [e["payload"]["success"] for e in run["events"] if e["event_type"] == "tool.responded"] == [True]

    seen = r["seen"]
    # Flask caught the view's exception and answered 500 itself: the run is errored all the same
    assert _failed_after_a_step(api, seen["boom"]) == (agent, "errored", "error", "HTTPServerError")
    assert _failed_after_a_step(api, seen["missing"]) == (agent, "completed", "completed", None)
    run = api.wait_run(seen["stream"])
    assert _outcome(run) == (agent, "completed", "final_answer", None)
    assert run["tool_calls"] == 3
    run = api.wait_run(seen["stream_slow"])
    assert _outcome(run) == (agent, "errored", "error", "ClientDisconnected")
    assert 1 <= run["tool_calls"] < 400
    assert seen["stream_steps"] == [True] * (3 + run["tool_calls"])

    _check_together(api, agent, r["together"], with_llm=True)

    expected = {
        ask["run_id"],
        helper["run_id"],
        seen["boom"],
        seen["missing"],
        seen["stream"],
        seen["stream_slow"],
        r["together"]["a"]["run_id"],
        r["together"]["b"]["run_id"],
    }
    assert len(expected) == 8
    assert _agent_runs(api, agent) == expected


def test_django_a_run_per_request_with_its_handled_500(oursdk_stacks_python: Path, oursdk_daemon: Sidecar) -> None:
    agent = _agent("django")
    out = run_script(oursdk_stacks_python, "mw_django", oursdk_daemon, extra_env={"MW_AGENT": agent})
    r = out.result
    api = Api(oursdk_daemon)
    assert {route: reply["status"] for route, reply in r["responses"].items()} == {
        "ask": 200,
        "boom": 500,
        "missing": 404,
    }
    ask = r["responses"]["ask"]["body"]
    assert ask["same"] is True  # request.META["dunetrace.run"] is get_current_run()
    run = api.wait_run(ask["run_id"])
    assert _outcome(run) == (agent, "completed", "final_answer", None)
    assert event_counts(run) == {"run.started": 1, "llm.called": 1, "llm.responded": 1, "run.completed": 1}
    assert _failed_after_a_step(api, r["seen"]["boom"]) == (agent, "errored", "error", "HTTPServerError")
    assert _failed_after_a_step(api, r["seen"]["missing"]) == (agent, "completed", "completed", None)
    _check_together(api, agent, r["together"], with_llm=False)
    expected = {ask["run_id"], r["seen"]["boom"], r["seen"]["missing"], *(t["run_id"] for t in r["together"].values())}
    assert len(expected) == 5
    assert _agent_runs(api, agent) == expected


def _lines(text: str) -> list[str]:
    """A code block's lines without indentation (the docs' text lost it) or blank lines."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_the_flask_script_holds_the_docs_get_current_run_block() -> None:
    docs = DOCS.read_text().splitlines()
    start = docs.index("from dunetrace import get_current_run", docs.index("get_current_run()"))
    block = docs[start : docs.index("return result", start) + 1]
    script = (SCRIPTS / "mw_flask.py").read_text().splitlines()
    ours = script[
        script.index("# --- the docs' get_current_run() block ---") + 1 : script.index("# --- end of the docs ---")
    ]
    assert _lines("\n".join(ours)) == _lines("\n".join(block))
    assert 'run.tool_called("cache_lookup")' in _lines("\n".join(ours))


def test_the_docs_middleware_scripts_hold_the_docs_blocks() -> None:
    """mw_docs_*.py hold the docs' FastAPI, Flask and Django blocks verbatim (modulo the
    indentation the docs' text lost), ready to run once dt.auto_instrument() exists."""
    text = DOCS.read_text().splitlines()
    for script, first, last in (
        ("mw_docs_fastapi.py", "from fastapi import FastAPI", "return resp.choices[0].message.content"),
        ("mw_docs_flask.py", "from flask import Flask", "app.wsgi_app = DunetraceWSGIMiddleware("),
        ("mw_docs_django.py", "# wsgi.py", "application = DunetraceWSGIMiddleware("),
    ):
        start = text.index(first)
        end = next(i for i in range(start, len(text)) if text[i].startswith(last))
        lines = (SCRIPTS / script).read_text().splitlines()
        ours = lines[lines.index("# --- the docs, verbatim ---") + 1 : lines.index("# --- end of the docs ---")]
        assert _lines("\n".join(ours)) == _lines("\n".join(text[start : end + 1])), script


# --- the docs' FastAPI, Flask and Django blocks, run (they call dt.auto_instrument()) ---


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI([Reply.answer("Paris is the capital."), Reply.answer("Rome is the capital.")]).start()
    yield server
    server.close()


def _docs_runs_checked(api: Api, agent: str, run_ids: list[str], before: set[str], marker: str) -> None:
    """Each request is one run of the docs' agent with the one LLM call auto_instrument saw, and
    the query (in the marker) reached the fake but nothing in the sidecar."""
    assert len(set(run_ids)) == 2
    for run_id in run_ids:
        run = api.wait_run(run_id)
        assert _outcome(run) == (agent, "completed", "final_answer", None)
        assert (run["llm_calls"], run["prompt_tokens"], run["completion_tokens"]) == (1, 10, 5)
        assert _names(run, "llm.called", "model") == {"gpt-4o"}
        assert marker not in json.dumps(run)
    assert _agent_runs(api, agent) - before == set(run_ids)


@pytest.mark.parametrize("framework", ["fastapi", "flask", "django"])
def test_the_docs_middleware_blocks_run_verbatim(
    framework: str, oursdk_stacks_python: Path, oursdk_daemon: Sidecar, fake_openai: FakeOpenAI
) -> None:
    agent = "django-api" if framework == "django" else "my-api"
    api = Api(oursdk_daemon)
    before = _agent_runs(api, agent)
    marker = uuid.uuid4().hex
    queries = [f"capital of France? {marker}", f"capital of Italy? {marker}"]
    env = {"FAKE_OPENAI_BASE_URL": fake_openai.base_url, "MW_QUERY_1": queries[0], "MW_QUERY_2": queries[1]}
    out = run_script(oursdk_stacks_python, f"mw_docs_{framework}", oursdk_daemon, extra_env=env)
    replies = out.result["replies"]
    assert [reply["status"] for reply in replies] == [200, 200]
    assert [request.body["messages"][0]["content"] for request in fake_openai.requests] == queries
    if framework == "fastapi":
        assert [reply["body"] for reply in replies] == ["Paris is the capital.", "Rome is the capital."]
        recorded = out.result["recorded"]
        assert [r["same"] for r in recorded] == [True, True]  # request.state.dunetrace_run is get_current_run()
        run_ids = [r["run_id"] for r in recorded]
    else:
        assert [reply["body"]["answer"] for reply in replies] == ["Paris is the capital.", "Rome is the capital."]
        run_ids = [reply["body"]["run_id"] for reply in replies]
    _docs_runs_checked(api, agent, run_ids, before, marker)
