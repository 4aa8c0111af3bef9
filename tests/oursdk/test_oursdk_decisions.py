"""The sidecar's live decisions inside a running agent (our SDK with its [grpc] extra, in the
stacks venv): the SDK watches each open run over gRPC, and a stop the sidecar decides interrupts
the agent mid-loop at its next step; switch_model and inject_prompt land on the run; the
sidecar's signals reach it. The SDK is given no endpoint, so it fetches no policy: every action
here was decided by the sidecar."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.oursdk.harness import run_script
from tests.sdk.harness import Api
from tests.sidecar import Sidecar

STOP = {
    "name": "sidecar cap",
    "agent_id": "live-stop",
    "condition": {"trigger": "tool_call_count", "operator": "gt", "value": 2},
    "action": {"type": "stop"},
}
DOWNGRADE = {
    "name": "sidecar downgrade",
    "agent_id": "live-steer",
    "condition": {"trigger": "step_count", "operator": "gte", "value": 2},
    "action": {"type": "switch_model", "params": {"model": "gpt-4o-mini"}},
}
NUDGE = {
    "name": "sidecar nudge",
    "agent_id": "live-steer",
    "condition": {"trigger": "step_count", "operator": "gte", "value": 3},
    "action": {"type": "inject_prompt", "params": {"prompt": "Answer with what you know now."}},
}


def created(api: Api, body: dict[str, Any]) -> int:
    answer = api.post("/v1/policies", body)
    assert answer.status == 201, answer.body
    policy_id: int = answer.json()["id"]
    return policy_id


def test_a_stop_the_sidecar_decides_interrupts_the_agent_mid_loop(
    oursdk_stacks_python: Path, oursdk_daemon: Sidecar
) -> None:
    api = Api(oursdk_daemon)
    stop_id = created(api, STOP)
    created(api, DOWNGRADE)
    created(api, NUDGE)
    out = run_script(oursdk_stacks_python, "decisions", oursdk_daemon)
    r = out.result

    # The third tool call (tool_call_count 3 > 2) makes the sidecar decide stop; its decision
    # reaches the agent while it sleeps between steps, and its next step raises. The loop would
    # have made 40 calls; exports leave every 100 ms and steps come every 250 ms, so the stop
    # lands within a few steps of the third.
    assert r["violation"] == {
        "policy_name": "sidecar cap",
        "policy_id": stop_id,
        "message": "The sidecar's policy 'sidecar cap' stopped the run",
    }
    assert 3 <= r["calls"] <= 8, r["calls"]
    stopped = api.wait_run(r["stop_run"], lambda run: run["status"] != "running")
    assert (stopped["status"], stopped["exit_reason"], stopped["tool_calls"]) == (
        "errored",
        "policy_violation",
        r["calls"],
    )
    policy_events = [e["payload"] for e in stopped["events"] if e["event_type"] == "policy.triggered"]
    assert [(p["policy_name"], p["action_type"], p["observed"]) for p in policy_events] == [("sidecar cap", "stop", 3)]
    assert "POLICY_VIOLATION" in {s["failure_type"] for s in stopped["signals"]}

    # Steered: from step 2 the sidecar says gpt-4o-mini, from step 3 it adds a prompt; the agent
    # reads both between steps (it stops looping once both are there).
    assert r["models"][0] == "gpt-4o" and len(r["models"]) < 12
    assert r["model_override"] == "gpt-4o-mini"
    assert r["additions"] == ["Answer with what you know now."]
    steer = api.wait_run(r["steer_run"], lambda run: run["status"] != "running")
    assert steer["status"] == "completed"
    # The run ids are UUIDs the SDK made; nothing leaked into the warning channel.
    assert uuid.UUID(r["stop_run"]) and "not available" not in out.stderr


def test_an_unreachable_sidecar_leaves_local_policies_working_and_says_so_once(
    oursdk_stacks_python: Path, oursdk_daemon: Sidecar
) -> None:
    closed = "127.0.0.1:9"  # the discard port: nothing listens
    extra = {"DUNETRACE_DECISIONS_ENDPOINT": closed}
    out = run_script(oursdk_stacks_python, "decisions_unreachable", oursdk_daemon, extra_env=extra)
    r = out.result
    assert (r["stopped"], r["calls"]) == (True, 3)  # the local stop: the 4th tool_called (4 > 3) raises
    api = Api(oursdk_daemon)
    for run_id in r["completed"]:
        assert api.wait_run(run_id, lambda run: run["status"] != "running")["status"] == "completed"
    warnings = [line for line in out.stderr.splitlines() if "live decisions" in line]
    assert len(warnings) == 1, out.stderr
    assert closed in warnings[0] and "local policies keep working" in warnings[0]
