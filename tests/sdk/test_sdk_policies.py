"""Policies through the published SDK (dunetrace==0.5.7): a local `stop` policy, and remote policies created on the
daemon (POST /v1/policies) that the SDK fetches itself at run start (GET /v1/policies?agent_id=<agent>, with its
API key). The SDK enforces an enforcing remote action only when it has a policy secret and the policy carries a
valid HMAC-SHA256 signature made with the same secret (wire.md §7); without a secret it downgrades it to `log`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fakes.ingest_proxy import sign_policy
from tests.fakes.llm_servers import FakeOpenAI, Reply
from tests.sdk.harness import Api, event_counts, run_scenario, signal_types
from tests.sidecar import Sidecar

SECRET = "sdk-e2e-policy-signing-secret"
STOP_AFTER_TWO = {
    "name": "remote: stop after 2 tool calls",
    "condition": {"trigger": "tool_call_count", "operator": "gt", "value": 2},
    "action": {"type": "stop", "params": {"message": "Stopped by a remote policy."}},
    "priority": 5,
}


def _create_policy(api: Api, agent_id: str) -> dict[str, Any]:
    created = api.post("/v1/policies", {**STOP_AFTER_TWO, "agent_id": agent_id})
    assert created.status == 201, created.body[:500]
    return dict(created.json())


def test_local_stop_policy_ends_the_run_as_policy_violation(
    sdk_python: Path, sdk_shared_daemon: Sidecar, fake_openai: Callable[[list[Reply]], FakeOpenAI]
) -> None:
    fake = fake_openai([*(Reply.tool_call("get_weather", {"city": "Paris"}) for _ in range(4)), Reply.answer("sunny")])
    api = Api(sdk_shared_daemon)
    out = run_scenario(sdk_python, "e_local_stop_policy", sdk_shared_daemon.api_url, fake_openai=fake.base_url)
    assert out.result["policy_violation"]["policy_name"] == "cap tool calls"
    assert (out.result["llm_calls"], out.result["tool_calls"]) == (3, 3)

    run = api.wait_run(out.result["run_id"])
    assert (run["agent_id"], run["source"]) == ("policy-stop-agent", "sdk")
    assert run["status"] == "errored"
    assert run["exit_reason"] == "policy_violation"
    assert (run["llm_calls"], run["tool_calls"]) == (3, 3)
    counts = event_counts(run)
    assert (counts["tool.called"], counts["tool.responded"]) == (3, 2)  # the third call was stopped
    assert counts["policy.triggered"] == 1
    assert counts["run.errored"] == 1 and counts["run.completed"] == 0


def test_remote_policy_unsigned_is_downgraded_to_log(sdk_python: Path, sdk_daemon: Callable[..., Sidecar]) -> None:
    daemon = sdk_daemon()
    api = Api(daemon)
    policy = _create_policy(api, "remote-agent-unsigned")
    served = api.json("/v1/policies?agent_id=remote-agent-unsigned")["policies"]
    assert [p["id"] for p in served] == [policy["id"]]

    out = run_scenario(
        sdk_python, "f_remote_policy", daemon.api_url, extra_env={"DT_AGENT_ID": "remote-agent-unsigned"}
    )
    # The SDK has no policy secret: it fetched the policy, and downgraded its `stop` to `log`.
    assert out.result["policy_violation"] is None
    assert any("downgraded to log-only" in w for w in out.result["sdk_warnings"]), out.result["sdk_warnings"]
    assert out.result["tool_calls"] == 4

    run = api.wait_run(out.result["run_id"])
    assert (run["agent_id"], run["source"]) == ("remote-agent-unsigned", "sdk")
    assert (run["status"], run["exit_reason"]) == ("completed", "final_answer")
    assert run["tool_calls"] == 4
    assert event_counts(run)["policy.triggered"] >= 1
    # The daemon evaluates its own policies on the stream too: a `stop` match raises POLICY_VIOLATION (api.md).
    assert "POLICY_VIOLATION" in signal_types(api.signals(out.result["run_id"]))


def test_remote_policy_signed_is_enforced(sdk_python: Path, sdk_daemon: Callable[..., Sidecar]) -> None:
    daemon = sdk_daemon(env={"DUNETRACE_POLICY_SECRET": SECRET})
    api = Api(daemon)
    policy = _create_policy(api, "remote-agent-signed")

    # What the SDK fetches: the policy in its shape, signed with the shared secret.
    [served] = api.json("/v1/policies?agent_id=remote-agent-signed")["policies"]
    assert served["id"] == policy["id"] and served["agent_id"] == "remote-agent-signed"
    assert served["enabled"] is True and served["priority"] == 5
    unsigned = {k: v for k, v in served.items() if k not in ("signature", "sig_version")}
    expected = sign_policy(unsigned, SECRET)["signature"]
    assert served["signature"] == expected

    out = run_scenario(
        sdk_python,
        "f_remote_policy",
        daemon.api_url,
        extra_env={"DT_AGENT_ID": "remote-agent-signed", "DT_POLICY_SECRET": SECRET},
    )
    assert out.result["policy_violation"] == {"policy_name": "remote: stop after 2 tool calls"}
    assert out.result["tool_calls"] == 3
    assert not any("signature" in w for w in out.result["sdk_warnings"]), out.result["sdk_warnings"]

    run = api.wait_run(out.result["run_id"])
    assert (run["agent_id"], run["source"]) == ("remote-agent-signed", "sdk")
    assert run["status"] == "errored"
    assert run["exit_reason"] == "policy_violation"
    assert run["tool_calls"] == 3
    counts = event_counts(run)
    assert counts["run.errored"] == 1 and counts["policy.triggered"] >= 1
    assert "POLICY_VIOLATION" in signal_types(api.signals(out.result["run_id"]))


def test_remote_policy_signed_with_another_secret_is_skipped(
    sdk_python: Path, sdk_daemon: Callable[..., Sidecar]
) -> None:
    daemon = sdk_daemon(env={"DUNETRACE_POLICY_SECRET": SECRET})
    api = Api(daemon)
    _create_policy(api, "remote-agent-mismatch")
    out = run_scenario(
        sdk_python,
        "f_remote_policy",
        daemon.api_url,
        extra_env={"DT_AGENT_ID": "remote-agent-mismatch", "DT_POLICY_SECRET": "not-the-daemons-secret"},
    )
    assert out.result["policy_violation"] is None
    assert any("failed signature verification" in w for w in out.result["sdk_warnings"]), out.result["sdk_warnings"]
    run = api.wait_run(out.result["run_id"])
    assert (run["status"], run["exit_reason"], run["tool_calls"]) == ("completed", "final_answer", 4)
