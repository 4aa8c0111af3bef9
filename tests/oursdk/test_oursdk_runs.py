"""Runs through our SDK reach the sidecar as runs: every way to open one, their steps and counts,
and a signal the sidecar's detectors raise on the spans."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from tests.oursdk.harness import run_script
from tests.sdk.harness import Api, event_counts, signal_types
from tests.sidecar import Sidecar


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_runs_and_steps_reach_the_sidecar(oursdk_python: Path, oursdk_daemon: Sidecar) -> None:
    out = run_script(oursdk_python, "runs", oursdk_daemon)
    api = Api(oursdk_daemon)
    r = out.result
    # get_current_run() is the open run in dt.run(), @dt.agent(), asyncio tasks and threads; None outside
    assert r["seen"] == {"outside": True, "dt.run": True, "after": True, "agent": True, "tasks": True, "threads": True}

    run = api.wait_run(r["steps_run"])
    assert str(uuid.UUID(run["trace_id"])) == r["steps_run"]  # the run id is the trace id
    assert (run["agent_id"], run["status"], run["exit_reason"]) == ("oursdk-steps", "completed", "final_answer")
    assert (run["llm_calls"], run["tool_calls"], run["retrievals"], run["step_count"]) == (2, 1, 1, 4)
    assert (run["prompt_tokens"], run["completion_tokens"], run["errors"]) == (320, 110, 0)
    assert event_counts(run) == {
        "run.started": 1,
        "llm.called": 2,
        "llm.responded": 2,
        "tool.called": 1,
        "tool.responded": 1,
        "retrieval.called": 1,
        "retrieval.responded": 1,
        "run.completed": 1,
    }
    by_type: dict[str, dict[str, object]] = {}
    for event in run["events"]:  # the first event of each type
        by_type.setdefault(event["event_type"], event["payload"])
    # the arguments as sorted compact JSON, whether the model's JSON text or the agent's dict
    assert by_type["tool.called"]["args_hash"] == _sha('{"city":"Paris"}')
    assert by_type["tool.called"]["tool_call_id"] == "call_1"
    assert by_type["llm.responded"]["tool_requests"] == [
        {"args_hash": _sha('{"city":"Paris"}'), "call_id": "call_1", "name": "weather"}
    ]
    assert by_type["tool.responded"]["output_hash"] == _sha("sunny, 21C")
    assert by_type["tool.responded"]["output_length"] == len("sunny, 21C")

    for run_id in r["decorated"]:
        decorated = api.wait_run(run_id)
        assert (decorated["status"], decorated["exit_reason"]) == ("completed", "final_answer")
    sync_run, async_run = (api.wait_run(run_id) for run_id in r["decorated"])
    assert (sync_run["agent_id"], sync_run["llm_calls"], sync_run["tool_calls"]) == ("oursdk-decorated", 1, 0)
    assert (async_run["agent_id"], async_run["llm_calls"], async_run["tool_calls"]) == ("oursdk-async-decorated", 0, 1)

    assert len(set(r["async_runs"])) == 3 and len(set(r["thread_runs"])) == 3
    for agent, run_ids in (("oursdk-async", r["async_runs"]), ("oursdk-threads", r["thread_runs"])):
        for run_id in run_ids:
            each = api.wait_run(run_id)
            shape = (each["agent_id"], each["status"], each["tool_calls"], each["llm_calls"])
            assert shape == (agent, "completed", 1, 0)


def test_a_repeated_tool_call_is_a_tool_loop_in_process_and_in_the_sidecar(
    oursdk_python: Path, oursdk_daemon: Sidecar
) -> None:
    out = run_script(oursdk_python, "tool_loop", oursdk_daemon)
    run = Api(oursdk_daemon).wait_run(out.result["run_id"], lambda r: bool(r["signals"]))
    assert (run["agent_id"], run["tool_calls"], run["llm_calls"]) == ("oursdk-loop", 6, 6)
    assert "TOOL_LOOP" in signal_types(Api(oursdk_daemon).signals(out.result["run_id"]))
    # no signal policy was in force, so the SDK's own detectors were never asked
    assert out.result["signals"] == []
