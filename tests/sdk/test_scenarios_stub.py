"""The harness on its own: every scenario script runs with the real SDK (dunetrace==0.5.7, .sdkenv/) against the stub
backend of tests/fakes/ingest_proxy.py (no daemon), and what the SDK put on the wire is what the daemon tests
(test_sdk_*.py) expect it to have received. If one of these fails, the scenario or the SDK environment is broken,
not the daemon.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.ingest_proxy import IngestProxy, StubBackend, sign_policy
from tests.fakes.llm_servers import FakeOpenAI, Reply
from tests.sdk.harness import API_KEY, run_scenario

LOOP = [*(Reply.tool_call("get_weather", {"city": "Paris"}) for _ in range(4)), Reply.answer("It is sunny in Paris.")]
TOOL_LOOP_RUN = {
    "run.started": 1,
    "llm.called": 5,
    "llm.responded": 5,
    "tool.called": 4,
    "tool.responded": 4,
    "run.completed": 1,
}


def _by_run(stub: StubBackend) -> dict[str, Counter[str]]:
    runs: dict[str, Counter[str]] = defaultdict(Counter)
    for event in stub.delivered_events():
        runs[event["run_id"]][event["event_type"]] += 1
    return dict(runs)


def _terminal(stub: StubBackend, run_id: str) -> dict[str, Any]:
    [event] = [
        e
        for e in stub.delivered_events()
        if e["run_id"] == run_id and e["event_type"] in ("run.completed", "run.errored")
    ]
    return dict(event)


@pytest.fixture
def stub() -> Any:
    with StubBackend() as backend:
        yield backend


def test_ingest_requests_carry_the_key(sdk_python: Path, stub: StubBackend) -> None:
    out = run_scenario(sdk_python, "k_durable", stub.url)
    [ingest, *_] = stub.ingests()
    assert ingest.headers["Authorization"] == f"Bearer {API_KEY}"
    assert ingest.body["api_key"] == API_KEY
    assert ingest.headers["User-Agent"] == "dunetrace-sdk-py/0.5.7"
    # the policies GET starts with the run; the detector-config GET follows it on the same background thread and
    # may not be made before a process this short exits
    fetched = {(x.path, x.query["agent_id"][0]) for x in stub.snapshot() if x.method == "GET"}
    assert ("/v1/policies", "durable-agent") in fetched
    assert fetched <= {("/v1/policies", "durable-agent"), ("/v1/detector-config", "durable-agent")}
    assert _by_run(stub)[out.result["run_id"]]["tool.called"] == 3


@pytest.mark.parametrize("name", ["a_tool_loop", "b_langchain"])
def test_tool_loop_scenarios(
    name: str, sdk_python: Path, stub: StubBackend, fake_openai: Callable[[list[Reply]], FakeOpenAI]
) -> None:
    fake = fake_openai(LOOP)
    out = run_scenario(sdk_python, name, stub.url, fake_openai=fake.base_url)
    assert (out.result["llm_calls"], out.result["tool_calls"]) == (5, 4)
    assert _by_run(stub) == {out.result["run_id"]: Counter(TOOL_LOOP_RUN)}
    assert _terminal(stub, out.result["run_id"])["payload"]["exit_reason"] == "final_answer"


def test_web_middleware_scenarios(
    sdk_python: Path, stub: StubBackend, fake_openai: Callable[[list[Reply]], FakeOpenAI]
) -> None:
    fake = fake_openai([Reply.answer("Sunny.")])
    asgi = run_scenario(sdk_python, "c_fastapi_asgi", stub.url, fake_openai=fake.base_url)
    wsgi = run_scenario(sdk_python, "d_flask_wsgi", stub.url)
    assert asgi.result["statuses"] == {"chat": 200, "items": 200, "boom": 500}
    assert wsgi.result["statuses"] == {"lookup": 200, "boom": 500}
    runs = _by_run(stub)
    assert runs[asgi.result["runs"]["chat"]] == {
        "run.started": 1,
        "llm.called": 1,
        "llm.responded": 1,
        "run.completed": 1,
    }
    assert runs[asgi.result["runs"]["items"]] == {
        "run.started": 1,
        "tool.called": 1,
        "tool.responded": 1,
        "run.completed": 1,
    }
    assert runs[asgi.result["runs"]["boom"]] == {"run.started": 1, "tool.called": 1, "run.errored": 1}
    assert _terminal(stub, asgi.result["runs"]["boom"])["payload"]["error_type"] == "RuntimeError"
    assert runs[wsgi.result["runs"]["boom"]] == {"run.started": 1, "tool.called": 1, "run.completed": 1}
    redacted = [e for e in stub.delivered_events() if e["run_id"] == wsgi.result["runs"]["lookup"]]
    assert '"api_key": "[REDACTED]"' in next(e for e in redacted if e["event_type"] == "tool.called")["payload"]["args"]


def test_local_stop_policy(
    sdk_python: Path, stub: StubBackend, fake_openai: Callable[[list[Reply]], FakeOpenAI]
) -> None:
    fake = fake_openai(LOOP)
    out = run_scenario(sdk_python, "e_local_stop_policy", stub.url, fake_openai=fake.base_url)
    assert out.result["policy_violation"]["policy_name"] == "cap tool calls"
    counts = _by_run(stub)[out.result["run_id"]]
    assert (counts["llm.called"], counts["tool.called"], counts["policy.triggered"], counts["run.errored"]) == (
        3,
        3,
        1,
        1,
    )
    assert _terminal(stub, out.result["run_id"])["payload"]["exit_reason"] == "policy_violation"


@pytest.mark.parametrize(
    ("signed", "secret", "violation", "warning"),
    [
        (False, None, False, "downgraded to log-only"),
        (True, "s3cret-for-the-stub", True, None),
        (True, "another-secret", False, "failed signature verification"),
    ],
)
def test_remote_policy(
    sdk_python: Path, signed: bool, secret: str | None, violation: bool, warning: str | None
) -> None:
    policy = {
        "id": 7,
        "agent_id": "remote-agent",
        "name": "remote: stop after 2 tool calls",
        "condition": {"trigger": "tool_call_count", "operator": "gt", "value": 2},
        "action": {"type": "stop", "params": {"message": "Stopped by a remote policy."}},
        "enabled": True,
        "priority": 5,
    }
    if signed:
        policy = sign_policy(policy, "s3cret-for-the-stub")
    env = {"DT_AGENT_ID": "remote-agent", **({"DT_POLICY_SECRET": secret} if secret else {})}
    with StubBackend(policies={"remote-agent": [policy]}) as stub:
        out = run_scenario(sdk_python, "f_remote_policy", stub.url, extra_env=env)
    assert (out.result["policy_violation"] is not None) == violation
    assert out.result["tool_calls"] == (3 if violation else 4)
    if warning:
        assert any(warning in w for w in out.result["sdk_warnings"]), out.result["sdk_warnings"]
    terminal = _terminal(stub, out.result["run_id"])
    assert terminal["event_type"] == ("run.errored" if violation else "run.completed")


def test_emit_as_json(sdk_python: Path, stub: StubBackend) -> None:
    out = run_scenario(sdk_python, "g_emit_as_json", stub.url)
    lines = out.ndjson()
    assert len(lines) == 13 == len(stub.delivered_events())
    assert {line["event_type"] for line in lines} >= {"retrieval.called", "memory.written", "run.completed"}
    runs = _by_run(stub)
    assert set(runs) == {out.result["run_id"], out.result["child_run_id"]}
    [child_start] = [
        e
        for e in stub.delivered_events()
        if e["run_id"] == out.result["child_run_id"] and e["event_type"] == "run.started"
    ]
    assert child_start["parent_run_id"] == out.result["run_id"]


def test_retry_through_the_proxy(sdk_python: Path, stub: StubBackend) -> None:
    with IngestProxy(stub.url, fail_first=2) as proxy:
        out = run_scenario(sdk_python, "r_retry", proxy.url, api_url=stub.url, extra_env={"DT_WAIT_STORED_S": "30"})
        statuses = [(x.status, x.answered_by) for x in proxy.ingests()]
    assert out.result["stored"] == {out.result["run_id"]: 200}
    assert statuses[:3] == [(503, "proxy"), (503, "proxy"), (200, "upstream")]
    ids = [e["event_id"] for e in stub.delivered_events()]
    assert len(ids) == len(set(ids)) == 10


def test_privacy_scenario_sends_the_marker_everywhere(
    sdk_python: Path, stub: StubBackend, fake_openai: Callable[[list[Reply]], FakeOpenAI]
) -> None:
    marker = "zqMARKERforTheStub"
    fake = fake_openai([Reply.tool_call("lookup", {"q": marker}), Reply.answer(f"answer {marker}")])
    out = run_scenario(
        sdk_python, "p_privacy", stub.url, fake_openai=fake.base_url, extra_env={"PRIVACY_MARKER": marker}
    )
    carrying = {
        (e["event_type"], key)
        for e in stub.delivered_events()
        for key, value in e["payload"].items()
        if marker in str(value)
    }
    assert carrying == {
        ("run.started", "input_text"),
        ("run.started", "system_prompt"),
        ("tool.called", "args"),
        ("tool.responded", "output"),
        ("tool.responded", "error"),
        ("llm.responded", "output"),
        ("external.signal", "meta"),
        ("retrieval.called", "query"),
        ("retrieval.responded", "content"),
        ("memory.written", "value"),
        ("run.errored", "error"),
    }
    assert out.result["errored_run_id"] in _by_run(stub)
