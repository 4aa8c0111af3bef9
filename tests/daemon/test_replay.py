"""`dunetrace-sidecar replay`: recorded requests or run events through translation and detectors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.sidecar import FIXTURES, ROOT


def replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dunetrace_sidecar", "replay", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def replay_json(*args: str) -> dict[str, Any]:
    result = replay(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_replay_fixtures_in_every_encoding() -> None:
    body = replay_json(
        str(FIXTURES / "openllmetry-openai-toolloop.pb"),
        str(FIXTURES / "otelgenai-anthropic-errors.json"),
        str(FIXTURES / "openllmetry-gzip-openai-toolloop.pb.gz"),
        str(FIXTURES / "openinference-openai-toolcall.pb"),
    )
    summary = [
        (r["agent_id"], r["status"], r["step_count"], [s["failure_type"] for s in r["signals"]]) for r in body["runs"]
    ]
    # The same expectations as the daemon's (tests/receiver/test_fixture_signals.py).
    assert summary == [
        ("support_agent", "completed", 8, ["TOOL_LOOP"]),
        ("support_agent", "errored", 5, ["FIRST_STEP_FAILURE"]),
        ("support_agent", "completed", 8, ["TOOL_LOOP"]),
        ("fixture-agent-openinference", "completed", 6, []),
    ]
    loop = body["runs"][0]["signals"][0]
    assert (loop["severity"], loop["confidence"], loop["step_index"]) == ("HIGH", 0.5, 6)


def test_replay_backtests_a_threshold(tmp_path: Path) -> None:
    config = tmp_path / "thresholds.yaml"
    config.write_text("detectors:\n  tool_loop: {threshold: 5}\n")
    body = replay_json(str(FIXTURES / "openllmetry-openai-toolloop.pb"), "--config", str(config))
    assert body["runs"][0]["signals"] == []


def test_replay_table_output() -> None:
    result = replay(str(FIXTURES / "openllmetry-openai-toolloop.pb"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["run_id", "agent_id", "status", "steps", "signals"]
    assert "TOOL_LOOP HIGH 0.50@6" in lines[1]
    assert lines[-1] == "1 run(s), 1 signal(s)"


def test_replay_logs_and_traces_of_events_mode() -> None:
    body = replay_json(
        str(FIXTURES / "openllmetry-events-openai-toolcall.logs.pb"),
        str(FIXTURES / "openllmetry-events-openai-toolcall.traces.pb"),
    )
    [run] = body["runs"]
    assert (run["status"], run["step_count"], run["signals"]) == ("completed", 5, [])


def test_replay_run_event_json_lines(tmp_path: Path) -> None:
    """Run events as the API shows them, and as the Dunetrace SDK's AgentEvent dicts."""
    api_style = tmp_path / "api.jsonl"
    lines = [
        {
            "run_id": "11111111-1111-4111-8111-111111111111",
            "agent_id": "a1",
            "event_type": "run.started",
            "timestamp": "2026-11-27T06:00:00Z",
            "call_id": "root",
            "payload": {"tools": ["search"]},
        }
    ]
    for i in range(3):
        for kind, extra in (("tool.called", {"args_hash": "sha256:aa"}), ("tool.responded", {"success": False})):
            lines.append(
                {
                    "run_id": lines[0]["run_id"],
                    "agent_id": "a1",
                    "event_type": kind,
                    "timestamp": f"2026-11-27T06:00:0{i + 1}Z",
                    "call_id": f"t{i}",
                    "payload": {"tool_name": "search", **extra},
                }
            )
    api_style.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    sdk_style = tmp_path / "sdk.jsonl"
    run = "22222222-2222-4222-8222-222222222222"
    sdk = [
        {
            "event_type": "run.started",
            "run_id": run,
            "agent_id": "a2",
            "step_index": 0,
            "timestamp": 1.0,
            "payload": {
                "tools": [],
                "injection_signal": {"matched_patterns": ["jailbreak"], "input_length": 40, "matched_pattern_count": 1},
            },
        },
        {
            "event_type": "memory.written",
            "run_id": run,
            "agent_id": "a2",
            "step_index": 0,
            "timestamp": 1.5,
            "payload": {"key": "k"},
        },
        {
            "event_type": "run.completed",
            "run_id": run,
            "agent_id": "a2",
            "step_index": 0,
            "timestamp": 2.0,
            "payload": {"exit_reason": "completed", "total_steps": 0},
        },
    ]
    sdk_style.write_text("\n".join(json.dumps(line) for line in sdk) + "\n")
    body = replay_json(str(api_style), str(sdk_style))
    first, second = body["runs"]
    # Three failed calls of one tool, in the order they are proved: the first call fails at step 1
    # (first-step failure), the third call makes a loop, its failure a retry storm.
    assert [s["failure_type"] for s in first["signals"]] == ["FIRST_STEP_FAILURE", "TOOL_LOOP", "RETRY_STORM"]
    assert first["status"] == "stalled"  # no run.completed in the file
    assert [s["failure_type"] for s in second["signals"]] == ["PROMPT_INJECTION_SIGNAL"]
    assert second["signals"][0]["evidence"]["matched_patterns"] == ["jailbreak"]


def test_replay_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\xff\xfe not protobuf")
    result = replay(str(garbage))
    assert result.returncode == 2
    assert "garbage.pb" in result.stderr and "not an OTLP protobuf request" in result.stderr
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text('{"event_type": "tool.called"}\n')
    result = replay(str(bad_line))
    assert result.returncode == 2 and "bad.jsonl:1" in result.stderr
    assert replay(str(tmp_path / "missing.pb")).returncode == 2
