"""Which signals each captured fixture fires, through the daemon, and why (written down here,
not derived from the detectors):

- toolloop: lookup_order is requested and run four times with identical arguments. The third
  call (step 6: LLM 1, tool 2, LLM 3, tool 4, LLM 5, tool 6) makes three of the same tool
  among the last (at most five) tool calls → TOOL_LOOP, HIGH (identical argument hashes),
  confidence scale(3/3) = 0.5. Nothing else: four LLM calls for four tools is no stall, the
  prompts stay under 2,000 tokens, and the run ends without asking for anything more.
- errors: the first LLM call (step 1) asks for fetch_report, which fails at step 2 → within
  the first two steps → FIRST_STEP_FAILURE (tool_failure, MEDIUM, 0.85). Only one answer is
  truncated (LLM_TRUNCATION_LOOP needs two); the 429 errors the run at step 5, past the
  first steps; after the last tool call come three LLM calls, under GOAL_ABANDONMENT's four.
- toolcall: one tool call that succeeds, a retrieval whose best score is 0.91, a final
  answer: nothing fires.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sidecar import FIXTURES, Sidecar, trace_ids_in, wait_for

TOOLLOOP = [
    "openllmetry-openai-toolloop.pb",
    "openllmetry-legacy-openai-toolloop.pb",
    "otelgenai-openai-toolloop.pb",
    "openinference-openai-toolloop.pb",
]
ERRORS = [
    "openllmetry-openai-errors.pb",
    "openllmetry-legacy-openai-errors.pb",
    "otelgenai-openai-errors.pb",
    "openinference-openai-errors.pb",
    "openllmetry-anthropic-errors.pb",
    "openllmetry-legacy-anthropic-errors.pb",
    "otelgenai-anthropic-errors.pb",
    "openinference-anthropic-errors.pb",
]
TOOLCALL = [
    "openllmetry-openai-toolcall.pb",
    "openllmetry-legacy-openai-toolcall.pb",
    "openllmetry-events-openai-toolcall.traces.pb",
    "otelgenai-openai-toolcall.pb",
    "openinference-openai-toolcall.pb",
    "openllmetry-anthropic-toolcall.pb",
    "openllmetry-legacy-anthropic-toolcall.pb",
    "otelgenai-anthropic-toolcall.pb",
    "openinference-anthropic-toolcall.pb",
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    sidecar = Sidecar(Path(tmp_path_factory.mktemp("fixture-signals"))).start()
    yield sidecar
    sidecar.close()


def signals_of(daemon: Sidecar, run_id: str) -> list[dict[str, Any]]:
    run = daemon.wait_run(run_id, lambda r: r["status"] != "running")
    listed = daemon.api_json(f"/v1/signals?run_id={run_id}")["signals"]
    assert sorted(s["signal_id"] for s in listed) == sorted(s["signal_id"] for s in run["signals"])
    return run["signals"]


def send(daemon: Sidecar, name: str) -> str:
    body = (FIXTURES / name).read_bytes()
    assert daemon.post_otlp(body).status == 200
    [run_id] = trace_ids_in(body)
    return run_id


@pytest.mark.parametrize("name", TOOLLOOP)
def test_toolloop_fires_tool_loop(daemon: Sidecar, name: str) -> None:
    [signal] = signals_of(daemon, send(daemon, name))
    assert (signal["failure_type"], signal["severity"], signal["confidence"], signal["step_index"]) == (
        "TOOL_LOOP",
        "HIGH",
        0.5,
        6,
    )
    assert signal["evidence"] == {
        "tool": "lookup_order",
        "count": 3,
        "window": 5,
        "first_step": 2,
        "last_step": 6,
        "step_indices": [2, 4, 6],
        "args_identical": True,
    }
    assert signal["mode"] == "live" and signal["shadow"] is False
    assert signal["explanation"]["title"] == "Tool loop: `lookup_order` called 3× in the last 5 tool calls"


def test_toolloop_over_grpc_and_gzip(daemon: Sidecar) -> None:
    grpc_body = (FIXTURES / "openllmetry-grpc-openai-toolloop.pb").read_bytes()
    daemon.grpc_export(grpc_body)
    gz = (FIXTURES / "openllmetry-gzip-openai-toolloop.pb.gz").read_bytes()
    assert daemon.post_otlp(gz, extra_headers={"Content-Encoding": "gzip"}).status == 200
    for body in (grpc_body, gzip.decompress(gz)):
        [run_id] = trace_ids_in(body)
        assert [s["failure_type"] for s in signals_of(daemon, run_id)] == ["TOOL_LOOP"]


@pytest.mark.parametrize("name", ERRORS)
def test_errors_fire_first_step_failure(daemon: Sidecar, name: str) -> None:
    [signal] = signals_of(daemon, send(daemon, name))
    assert (signal["failure_type"], signal["severity"], signal["confidence"], signal["step_index"]) == (
        "FIRST_STEP_FAILURE",
        "MEDIUM",
        0.85,
        2,
    )
    assert signal["evidence"] == {"trigger": "tool_failure", "failed_step": 2, "tool": "fetch_report"}


@pytest.mark.parametrize("name", TOOLCALL)
def test_toolcall_is_clean(daemon: Sidecar, name: str) -> None:
    assert signals_of(daemon, send(daemon, name)) == []


def test_signals_api_filters(daemon: Sidecar) -> None:
    loop_run = send(daemon, "otelgenai-openai-toolloop.pb")
    wait_for(lambda: daemon.api_json(f"/v1/signals?run_id={loop_run}")["signals"], what="the tool loop signal")
    by_type = daemon.api_json("/v1/signals?failure_type=TOOL_LOOP&limit=500")["signals"]
    assert by_type and all(s["failure_type"] == "TOOL_LOOP" for s in by_type)
    medium = daemon.api_json("/v1/signals?severity=medium&limit=500")["signals"]
    assert medium and all(s["severity"] == "MEDIUM" for s in medium)
    errors_run = send(daemon, "openinference-openai-errors.pb")  # agent fixture-agent-openinference
    wait_for(lambda: daemon.api_json(f"/v1/signals?run_id={errors_run}")["signals"], what="its signal")
    agent = daemon.api_json("/v1/signals?agent_id=fixture-agent-openinference&limit=500")["signals"]
    assert agent and all(s["agent_id"] == "fixture-agent-openinference" for s in agent)
    assert daemon.api_json("/v1/signals?agent_id=no-such-agent")["signals"] == []
    one = daemon.api_json(f"/v1/signals/{by_type[0]['signal_id']}")
    assert one == by_type[0]
    missing = daemon.api("/v1/signals/00000000-0000-5000-8000-000000000000")
    assert missing.status == 404 and missing.json()["error"]["code"] == "signal_not_found"
    assert daemon.api("/v1/signals/not-a-uuid").status == 400
    assert daemon.api("/v1/signals?severity=LOUD").status == 400
    assert daemon.api("/v1/signals?include_shadow=maybe").status == 400
    # Paging walks every signal once.
    seen: list[str] = []
    cursor = ""
    for _ in range(100):
        page = daemon.api_json(f"/v1/signals?limit=2{cursor}")
        seen += [s["signal_id"] for s in page["signals"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    everything = daemon.api_json("/v1/signals?limit=500")["signals"]
    assert seen == [s["signal_id"] for s in everything] and len(seen) == len(set(seen))
