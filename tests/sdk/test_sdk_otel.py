"""The published SDK's two OpenTelemetry integrations (dunetrace==0.5.7) against the daemon (contract: wire.md §12,
compat.md (h) and (i)). Every expectation is written by hand from the scenario's known shape (see each script's
docstring) and checked through our API.

(h) DunetraceOTelExporter mirrors the SDK's events as spans of scope "dunetrace"; pointed at the daemon's own
    OTLP/HTTP receiver while the SDK ships the same events to /v1/ingest, the run must not count twice.
(i) DunetraceOTelReceiver replays an OTel-only agent's gen_ai spans as a dt.run shipped to /v1/ingest.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.fakes.llm_servers import FakeOpenAI, Reply
from tests.sdk.harness import Api, event_counts, run_scenario, signal_types
from tests.sidecar import Sidecar, http, wait_for

WEATHER = {"city": "Paris"}


def _metric(daemon: Sidecar, name: str, **labels: str) -> float:
    """One sample of the daemon's /metrics (0 when the series does not exist yet)."""
    result = http("GET", daemon.api_url + "/metrics")
    assert result.status == 200, result.status
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in result.body.decode().splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name:
            got = ",".join(sorted((match[2] or "").split(","))) if match[2] else ""
            if got == want:
                return float(match[3])
    return 0.0


def test_otel_exporter_to_our_otlp_receiver_does_not_double_the_run(
    sdk_python: Path, sdk_daemon: Callable[..., Sidecar], fake_openai: Callable[[list[Reply]], FakeOpenAI]
) -> None:
    daemon = sdk_daemon()
    api = Api(daemon)
    calls = [Reply.tool_call("get_weather", WEATHER, input_tokens=120, output_tokens=7) for _ in range(4)]
    fake = fake_openai([*calls, Reply.answer("It is sunny in Paris.", input_tokens=120, output_tokens=7)])
    accepted = {"transport": "http", "signal": "traces", "outcome": "accepted"}
    accepted_before = _metric(daemon, "dunetrace_export_requests_total", **accepted)

    out = run_scenario(
        sdk_python,
        "h_otel_exporter",
        daemon.api_url,
        fake_openai=fake.base_url,
        extra_env={"DT_OTLP_TRACES_URL": daemon.http_url + "/v1/traces"},
    )
    result = out.result
    assert (result["llm_calls"], result["tool_calls"]) == (5, 4)
    assert fake.remaining == 0 and fake.errors == []

    run_id = result["run_id"]
    # The exporter's trace id is the run id's hex; every span it made is of that one trace, scope "dunetrace":
    # the run span, a chat span per LLM call and a span per tool call.
    assert result["otel_trace_id"] == uuid.UUID(run_id).hex
    assert result["span_trace_ids"] == [uuid.UUID(run_id).hex]
    assert result["scopes"] == ["dunetrace"]
    assert result["spans"] == {"dunetrace.run": 1, "chat gpt-4o": 5, "dunetrace.tool.get_weather": 4}
    # ... and the daemon's OTLP/HTTP receiver acknowledged all ten of them. (Its dunetrace_spans_received_total
    # does not count spans it leaves out as mirrored, so the accepted export requests are what /metrics shows.)
    assert result["otlp"]["calls_failed"] == 0
    assert result["otlp"]["spans_ok"] == 10 and result["otlp"]["calls_ok"] >= 1
    assert (
        _metric(daemon, "dunetrace_export_requests_total", **accepted) - accepted_before == result["otlp"]["calls_ok"]
    )

    run = api.wait_run(run_id)
    assert run["run_id"] == run_id
    assert (run["agent_id"], run["source"]) == ("otel-weather-agent", "sdk")
    assert (run["status"], run["exit_reason"]) == ("completed", "final_answer")
    # counted once, from ingest: the mirrored spans are left out
    assert (run["llm_calls"], run["tool_calls"], run["retrievals"], run["errors"]) == (5, 4, 0, 0)
    assert run["step_count"] == 9
    assert (run["prompt_tokens"], run["completion_tokens"]) == (600, 35)
    assert event_counts(run) == {
        "run.started": 1,
        "llm.called": 5,
        "llm.responded": 5,
        "tool.called": 4,
        "tool.responded": 4,
        "run.completed": 1,
    }
    [tool_loop] = [s for s in api.signals(run_id) if s["failure_type"] == "TOOL_LOOP"]
    assert (tool_loop["mode"], tool_loop["severity"]) == ("live", "HIGH")
    assert "TOOL_LOOP" in signal_types(run["signals"])
    # one run in all: no second run out of the trace
    assert [r["run_id"] for r in api.json("/v1/runs")["runs"]] == [run_id]
    assert set(api.agents()) == {"otel-weather-agent"}


def test_otel_receiver_replays_gen_ai_spans_as_one_sdk_run(
    sdk_python: Path, sdk_daemon: Callable[..., Sidecar]
) -> None:
    daemon = sdk_daemon()
    api = Api(daemon)
    out = run_scenario(sdk_python, "i_otel_receiver", daemon.api_url)
    assert out.result["agent_id"] == "otel-recv-agent"
    assert out.result["spans_fed"] == 7  # the root, 2 LLM, 2 tool, 1 retrieval and 1 plain span

    def listed() -> list[dict[str, object]] | None:
        runs = api.json("/v1/runs?agent_id=otel-recv-agent")["runs"]
        return runs or None

    [summary] = wait_for(listed, timeout=20, what="the replayed run listed")
    run_id = str(summary["run_id"])
    # the receiver's dt.run has a fresh uuid4 run id, not the OTel trace id
    assert uuid.UUID(run_id).version == 4
    assert uuid.UUID(run_id).hex != out.result["otel_trace_id"]

    run = api.wait_run(run_id)
    assert (run["agent_id"], run["source"]) == ("otel-recv-agent", "sdk")
    assert (run["status"], run["exit_reason"]) == ("completed", "final_answer")
    assert (run["llm_calls"], run["tool_calls"], run["retrievals"], run["errors"]) == (2, 2, 1, 0)
    assert run["step_count"] == 5  # llm 1, tool 2, tool 3, retrieval 4, llm 5
    assert (run["prompt_tokens"], run["completion_tokens"]) == (330, 43)
    assert event_counts(run) == {
        "run.started": 1,
        "llm.called": 2,
        "llm.responded": 2,
        "tool.called": 2,
        "tool.responded": 2,
        "retrieval.called": 1,
        "retrieval.responded": 1,
        "run.completed": 1,
    }
    # the only run: nothing else came of the trace
    assert [r["run_id"] for r in api.json("/v1/runs")["runs"]] == [run_id]
