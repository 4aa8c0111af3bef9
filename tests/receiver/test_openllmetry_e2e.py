"""End to end with real clients over real sockets: an OpenLLMetry-instrumented agent process
(traceloop-sdk 0.62.4, the official ``openai`` 3.x / ``anthropic`` 2.x SDKs) talks to fake
provider servers on 127.0.0.1 and exports its spans to the real daemon; the run is then read
back through the daemon's HTTP API.

Each scenario is one agent process (``tests/fakes/agent_script.py``): ``Traceloop.init`` is
process-global. The agent is only given the one OTLP address of the transport under test, so
its spans can only have reached the daemon over that transport. Every expected number below is
written down from the scenario's script, not derived from the translator:

- (a) openai, OTLP/HTTP: LLM asks ``lookup_order`` → tool runs → LLM answers (2 LLM, 1 tool).
- (b) anthropic, OTLP/HTTP: the same loop; anthropic 2.x also traces itself, so each of the two
  provider calls arrives as two spans (``anthropic.chat`` + ``anthropic.messages.create``) and
  must still count as one LLM call, with tokens counted once.
- (c) openai, OTLP/gRPC (batch processor, explicit flush): the model asks for ``lookup_order``
  with identical arguments 4 times; the agent stops at max_steps=4 without a final answer.
- (d) openai, OTLP/HTTP, streamed (SSE with ``stream_options.include_usage``): a streamed tool
  call, the tool, then a streamed text answer.

Privacy: every scenario carries distinctive strings in the user prompt, the fake model's
answer, the tool's arguments and the tool's result. The agent also writes every exported span
to a local file, so the test first proves those strings really were in the exported telemetry,
then that they appear nowhere in the API's JSON, nor in the daemon's log, nor in its store files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes.llm_servers import FakeAnthropic, FakeLLMServer, FakeOpenAI, Reply
from tests.sidecar import ROOT, Sidecar, event_kinds

AGENT_SCRIPT = ROOT / "tests" / "fakes" / "agent_script.py"
AGENT_TIMEOUT = 60.0
TOOL = "lookup_order"


@dataclass(frozen=True)
class Secrets:
    """Distinctive content that must never leave the agent's process unhashed."""

    prompt: str
    completion: str | None  # None: the model never answers with text
    tool_arg: str
    tool_result: str

    def all(self) -> tuple[str, ...]:
        return tuple(s for s in (self.prompt, self.completion, self.tool_arg, self.tool_result) if s is not None)


@dataclass(frozen=True)
class AgentRun:
    trace_id: str  # 32 hex
    llm_requests: int
    tool_runs: int
    finish_reasons: list[str]
    final_is_text: bool
    spans: list[dict[str, Any]]  # every span the agent exported, as written by its span dump

    @property
    def run_id(self) -> str:
        return str(uuid.UUID(self.trace_id))

    def span_names(self) -> Counter[str]:
        return Counter(span["name"] for span in self.spans)


def agent_env() -> dict[str, str]:
    """The test's environment without anything that could redirect the agent (OTel/Traceloop
    settings, provider settings, proxies)."""
    drop = ("OTEL_", "TRACELOOP_", "DUNETRACE_", "OPENAI_", "ANTHROPIC_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and "proxy" not in k.lower()}
    env.update({"TRACELOOP_METRICS_ENABLED": "false", "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost"})
    return env


def run_agent(
    tmp_path: Path,
    *,
    provider: str,
    fake: FakeLLMServer,
    otlp_endpoint: str,
    workflow: str,
    secrets: Secrets,
    max_steps: int,
    batch: bool = False,
    stream: bool = False,
) -> AgentRun:
    span_dump = tmp_path / f"{workflow}.spans.jsonl"
    config = {
        "provider": provider,
        "llm_base_url": fake.base_url,
        "otlp_endpoint": otlp_endpoint,
        "batch": batch,
        "app_name": "dunetrace-e2e-agent",
        "workflow": workflow,
        "prompt": f"Where is my parcel? My reference is {secrets.prompt}.",
        "tool_secret": secrets.tool_result,
        "stream": stream,
        "max_steps": max_steps,
        "span_dump": str(span_dump),
    }
    proc = subprocess.run(
        [sys.executable, str(AGENT_SCRIPT)],
        input=json.dumps(config),
        capture_output=True,
        text=True,
        timeout=AGENT_TIMEOUT,
        env=agent_env(),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, f"agent exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert fake.errors == [], fake.errors
    [line] = [line for line in proc.stdout.splitlines() if line.startswith("AGENT_RESULT ")]
    result = json.loads(line.removeprefix("AGENT_RESULT "))
    assert result["flushed"] is True
    spans = [json.loads(line) for line in span_dump.read_text().splitlines()]
    return AgentRun(
        trace_id=result["trace_id"],
        llm_requests=result["llm_requests"],
        tool_runs=result["tool_runs"],
        finish_reasons=result["finish_reasons"],
        final_is_text=result["final_is_text"],
        spans=spans,
    )


def fetch_run(sidecar: Sidecar, agent: AgentRun) -> dict[str, Any]:
    """The run, once it has ended; the hex and UUID forms of the id name the same run."""
    run = sidecar.wait_run(agent.trace_id, lambda r: r["status"] != "running", timeout=20)
    assert sidecar.run(agent.run_id) == run
    assert run["run_id"] == agent.run_id
    assert run["trace_id"] == agent.trace_id
    return run


def payloads(run: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in run["events"] if e["event_type"] == kind]


def finish_reasons(run: dict[str, Any]) -> list[str | None]:
    return [p.get("finish_reason") for p in payloads(run, "llm.responded")]


def check_privacy(sidecar: Sidecar, agent: AgentRun, run: dict[str, Any], secrets: Secrets, workflow: str) -> None:
    # The strings really were exported by the agent (else the checks below would prove nothing).
    exported = json.dumps(agent.spans)
    for secret in secrets.all():
        assert secret in exported, f"{secret!r} was not in the agent's exported spans; the scenario is broken"
    # ...and the daemon kept none of them: not in the run, not in the run list, not in its log.
    listed = sidecar.api(f"/v1/runs?agent_id={run['agent_id']}&limit=500")
    assert listed.status == 200
    assert agent.run_id in [r["run_id"] for r in listed.json()["runs"]]
    served = json.dumps(run) + listed.body.decode()
    log = sidecar.log_text()
    for secret in secrets.all():
        assert secret not in served, f"{secret!r} leaked into the API's JSON"
        assert secret not in log, f"{secret!r} leaked into the daemon's log"
    # Content reached the daemon and was reduced to hashes: every LLM call has a prompt hash, on
    # its llm.called or on an llm.content amendment of the same call (see the anthropic test).
    for event in run["events"]:
        if event["event_type"] == "llm.called":
            view = llm_call_view(run, event["call_id"])
            assert view["prompt_hash"].startswith("sha256:"), view
    for called in payloads(run, "tool.called"):
        assert called["args_hash"].startswith("sha256:")
    # The store files hold no raw copy either (a byte scan of the database and its WAL: it finds any copy
    # stored uncompressed).
    store_bytes = b"".join(p.read_bytes() for p in sidecar.workdir.glob("*.duckdb*") if p.is_file())
    assert store_bytes, "no store file found"
    for secret in secrets.all():
        assert secret.encode() not in store_bytes, f"{secret!r} is stored raw in the DuckDB files"


def check_tool_events(run: dict[str, Any], calls: int) -> None:
    called = payloads(run, "tool.called")
    responded = payloads(run, "tool.responded")
    assert [c["tool_name"] for c in called] == [TOOL] * calls
    assert [(r["tool_name"], r["success"]) for r in responded] == [(TOOL, True)] * calls


def llm_call_view(run: dict[str, Any], call_id: str) -> dict[str, Any]:
    """Everything the run says about one LLM call: its llm.called and llm.responded payloads, then
    any llm.content amendment (the daemon's event for content that arrived after the call was
    recorded, e.g. OpenLLMetry's span arriving after the anthropic SDK's thinner twin)."""
    view: dict[str, Any] = {}
    for kind in ("llm.called", "llm.responded", "llm.content"):
        for event in run["events"]:
            if event["event_type"] == kind and event["call_id"] == call_id:
                view.update(event["payload"])
    return view


def main_events(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's events without llm.content amendments."""
    return [e for e in run["events"] if e["event_type"] != "llm.content"]


def check_steps(run: dict[str, Any], steps: list[int], total: int) -> None:
    assert [e["step_index"] for e in main_events(run)] == steps
    assert run["step_count"] == total
    assert run["events"][-1]["payload"]["total_steps"] == total


ONE_TOOL_CALL_KINDS = [
    "run.started",
    "llm.called",
    "llm.responded",
    "tool.called",
    "tool.responded",
    "llm.called",
    "llm.responded",
    "run.completed",
]
ONE_TOOL_CALL_STEPS = [0, 1, 1, 2, 2, 3, 3, 3]


def test_openai_tool_call_over_otlp_http(sidecar: Sidecar, tmp_path: Path) -> None:
    secrets = Secrets("Zanzibar-7781-a", "Kilimanjaro-4402-a", "Okavango-5519-a", "Serengeti-3360-a")
    workflow = "e2e_openai_toolcall"
    script = [
        Reply.tool_call(TOOL, {"order_id": secrets.tool_arg}, input_tokens=120, output_tokens=18),
        Reply.answer(f"Your parcel {secrets.completion} arrives on Tuesday.", input_tokens=160, output_tokens=25),
    ]
    with FakeOpenAI(script) as fake:
        agent = run_agent(
            tmp_path,
            provider="openai",
            fake=fake,
            otlp_endpoint=sidecar.http_url,
            workflow=workflow,
            secrets=secrets,
            max_steps=4,
        )
        assert fake.remaining == 0
        assert len(fake.requests) == 2
        # The second request carried the tool's result back to the model as a tool message.
        assert [m["role"] for m in fake.requests[1].body["messages"]] == ["system", "user", "assistant", "tool"]
        assert secrets.tool_result in fake.requests[1].body["messages"][3]["content"]
    assert (agent.llm_requests, agent.tool_runs, agent.final_is_text) == (2, 1, True)
    assert agent.span_names()["openai.chat"] == 2

    run = fetch_run(sidecar, agent)
    assert run["status"] == "completed"
    assert run["agent_id"] == "support_agent"  # the @agent inside the workflow: agent names win
    assert run["exit_reason"] == "final_answer"
    assert (run["llm_calls"], run["tool_calls"], run["retrievals"], run["errors"]) == (2, 1, 0, 0)
    assert (run["prompt_tokens"], run["completion_tokens"]) == (120 + 160, 18 + 25)
    assert event_kinds(run) == ONE_TOOL_CALL_KINDS
    assert finish_reasons(run) == ["tool_calls", "stop"]
    assert [p["tool_calls_requested"] for p in payloads(run, "llm.responded")] == [[TOOL], []]
    assert [p["provider"] for p in payloads(run, "llm.called")] == ["openai", "openai"]
    assert payloads(run, "run.started")[0]["tools"] == [TOOL]
    assert payloads(run, "run.completed")[0]["exit_reason"] == "final_answer"
    check_tool_events(run, 1)
    check_steps(run, ONE_TOOL_CALL_STEPS, 3)
    check_privacy(sidecar, agent, run, secrets, workflow)


def test_anthropic_tool_call_with_sdk_native_spans_over_otlp_http(sidecar: Sidecar, tmp_path: Path) -> None:
    secrets = Secrets("Zanzibar-7781-b", "Kilimanjaro-4402-b", "Okavango-5519-b", "Serengeti-3360-b")
    workflow = "e2e_anthropic_toolcall"
    script = [
        Reply.tool_call(TOOL, {"order_id": secrets.tool_arg}, input_tokens=210, output_tokens=31),
        Reply.answer(f"Your parcel {secrets.completion} arrives on Tuesday.", input_tokens=260, output_tokens=44),
    ]
    with FakeAnthropic(script) as fake:
        agent = run_agent(
            tmp_path,
            provider="anthropic",
            fake=fake,
            otlp_endpoint=sidecar.http_url,
            workflow=workflow,
            secrets=secrets,
            max_steps=4,
        )
        assert fake.remaining == 0
        assert len(fake.requests) == 2
        tool_result_turn = fake.requests[1].body["messages"][2]
        assert tool_result_turn["role"] == "user"
        assert tool_result_turn["content"][0]["type"] == "tool_result"
        assert secrets.tool_result in tool_result_turn["content"][0]["content"]
    assert (agent.llm_requests, agent.tool_runs, agent.final_is_text) == (2, 1, True)
    assert agent.finish_reasons == ["tool_use", "end_turn"]
    # Two provider calls, four LLM spans: OpenLLMetry's and the anthropic SDK's own.
    names = agent.span_names()
    assert (names["anthropic.chat"], names["anthropic.messages.create"]) == (2, 2)

    run = fetch_run(sidecar, agent)
    assert run["status"] == "completed"
    assert run["agent_id"] == "support_agent"  # the @agent inside the workflow: agent names win
    assert run["exit_reason"] == "final_answer"
    # One provider call is one LLM call, and its tokens are counted once.
    assert (run["llm_calls"], run["tool_calls"], run["retrievals"], run["errors"]) == (2, 1, 0, 0)
    assert (run["prompt_tokens"], run["completion_tokens"]) == (210 + 260, 31 + 44)
    # The SDK's span of each call ends (and is exported) before OpenLLMetry's: the daemon records
    # the call from it, stores the richer twin's content as an amendment of that call, and the API
    # folds the amendment into the call's own events.
    assert [e["event_type"] for e in run["events"]] == ONE_TOOL_CALL_KINDS
    llm_ids = [e["call_id"] for e in run["events"] if e["event_type"] == "llm.called"]
    assert finish_reasons(run) == ["tool_calls", "stop"]  # tool_use / end_turn, normalised
    assert [llm_call_view(run, call_id)["tool_calls_requested"] for call_id in llm_ids] == [[TOOL], []]
    assert [p["provider"] for p in payloads(run, "llm.called")] == ["anthropic", "anthropic"]
    check_tool_events(run, 1)
    check_steps(run, ONE_TOOL_CALL_STEPS, 3)
    check_privacy(sidecar, agent, run, secrets, workflow)

    # The twin's tool definitions (gen_ai.tool.definitions is only on anthropic.chat) join the run's
    # available tools, and its tool request shows on the call's own llm.responded.
    assert payloads(run, "run.started")[0]["tools"] == [TOOL]
    assert [p["tool_calls_requested"] for p in payloads(run, "llm.responded")] == [[TOOL], []]


def test_openai_tool_loop_over_otlp_grpc(sidecar: Sidecar, tmp_path: Path) -> None:
    secrets = Secrets("Zanzibar-7781-c", None, "Okavango-5519-c", "Serengeti-3360-c")
    workflow = "e2e_openai_toolloop_grpc"
    # The model keeps asking for the same lookup; the agent gives up after 4 LLM calls.
    script = [Reply.tool_call(TOOL, {"order_id": secrets.tool_arg}, input_tokens=100 + 10 * i) for i in range(4)]
    with FakeOpenAI(script) as fake:
        agent = run_agent(
            tmp_path,
            provider="openai",
            fake=fake,
            otlp_endpoint=sidecar.grpc_target,
            workflow=workflow,
            secrets=secrets,
            max_steps=4,
            batch=True,
        )
        assert fake.remaining == 0
        assert len(fake.requests) == 4
    assert (agent.llm_requests, agent.tool_runs, agent.final_is_text) == (4, 4, False)
    assert (agent.span_names()["openai.chat"], agent.span_names()["lookup_order.tool"]) == (4, 4)

    run = fetch_run(sidecar, agent)
    assert run["status"] == "completed"
    assert run["agent_id"] == "support_agent"  # the @agent inside the workflow: agent names win
    assert run["exit_reason"] == "completed"  # ended OK, but the last response asked for a tool
    assert (run["llm_calls"], run["tool_calls"], run["retrievals"], run["errors"]) == (4, 4, 0, 0)
    assert (run["prompt_tokens"], run["completion_tokens"]) == (100 + 110 + 120 + 130, 5 * 4)
    assert event_kinds(run) == [
        "run.started",
        *["llm.called", "llm.responded", "tool.called", "tool.responded"] * 4,
        "run.completed",
    ]
    assert finish_reasons(run) == ["tool_calls"] * 4
    check_tool_events(run, 4)
    args_hashes = {p["args_hash"] for p in payloads(run, "tool.called")}
    assert len(args_hashes) == 1, "identical arguments must hash identically"
    check_steps(run, [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 8], 8)
    check_privacy(sidecar, agent, run, secrets, workflow)

    # With a batch processor the root span comes in the same export as the LLM spans that declare
    # the tools; run.started still names them.
    assert payloads(run, "run.started")[0]["tools"] == [TOOL]


def test_openai_streamed_answer_over_otlp_http(sidecar: Sidecar, tmp_path: Path) -> None:
    secrets = Secrets("Zanzibar-7781-d", "Kilimanjaro-4402-d", "Okavango-5519-d", "Serengeti-3360-d")
    workflow = "e2e_openai_streamed"
    script = [
        Reply.tool_call(TOOL, {"order_id": secrets.tool_arg}, input_tokens=140, output_tokens=21),
        Reply.answer(f"Your parcel {secrets.completion} arrives on Tuesday.", input_tokens=190, output_tokens=27),
    ]
    with FakeOpenAI(script) as fake:
        agent = run_agent(
            tmp_path,
            provider="openai",
            fake=fake,
            otlp_endpoint=sidecar.http_url,
            workflow=workflow,
            secrets=secrets,
            max_steps=4,
            stream=True,
        )
        assert fake.remaining == 0
        assert [(r.body.get("stream"), r.body.get("stream_options")) for r in fake.requests] == [
            (True, {"include_usage": True})
        ] * 2
    assert (agent.llm_requests, agent.tool_runs, agent.final_is_text) == (2, 1, True)
    assert agent.finish_reasons == ["tool_calls", "stop"]
    llm_spans = [s for s in agent.spans if s["name"] == "openai.chat"]
    assert [s["attributes"].get("gen_ai.is_streaming") for s in llm_spans] == [True, True]

    run = fetch_run(sidecar, agent)
    assert run["status"] == "completed"
    assert run["agent_id"] == "support_agent"  # the @agent inside the workflow: agent names win
    assert run["exit_reason"] == "final_answer"
    assert (run["llm_calls"], run["tool_calls"], run["retrievals"], run["errors"]) == (2, 1, 0, 0)
    # Usage arrives only in the last chunk (stream_options.include_usage).
    assert (run["prompt_tokens"], run["completion_tokens"]) == (140 + 190, 21 + 27)
    assert event_kinds(run) == ONE_TOOL_CALL_KINDS
    assert finish_reasons(run) == ["tool_calls", "stop"]
    assert [p["tool_calls_requested"] for p in payloads(run, "llm.responded")] == [[TOOL], []]
    assert payloads(run, "run.started")[0]["tools"] == [TOOL]
    answer = payloads(run, "llm.responded")[1]
    assert answer["output_length"] == 50  # len("Your parcel Kilimanjaro-4402-d arrives on Tuesday.")
    check_tool_events(run, 1)
    check_steps(run, ONE_TOOL_CALL_STEPS, 3)
    check_privacy(sidecar, agent, run, secrets, workflow)
