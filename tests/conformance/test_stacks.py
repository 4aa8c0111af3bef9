"""Real agent stacks, captured (tools/stacks/, `make captures`), through the running daemon.

Every capture is one agent run against the scripted fake LLM of tools/stacks/fake_llm.py: the
model asks for ``lookup_order({"order_id": "A123"})`` four times with identical arguments, then
answers with text. So, written by hand from what the fake LLM did, every stack should give one
run with 5 LLM calls and 4 tool calls of ``lookup_order`` with identical arguments, finish reasons
tool_calls ×4 then stop, a final answer, and TOOL_LOOP HIGH (the third identical call) — and no
other signal. Where an instrumentation withholds a fact, the expectation says what we cannot see
instead, and still no false signal.

Variants of every stack (``-clean``: the model asks for the tool once, then answers; ``-empty``
/ ``-truncate``: it answers with empty / cut-off text) check that nothing fires on a healthy run
and that the right thing fires on a broken answer, whatever the stack.

Each capture is delivered in every order of ``tests.conformance.stacks.ORDERS`` over OTLP/HTTP,
and as captured over OTLP/gRPC; every delivery must give the same answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conformance.stacks import ORDERS, STACKS, Capture, deliver, plan
from tests.sidecar import Sidecar

LOOKUP = "lookup_order"


@dataclass(frozen=True)
class Expected:
    agent_id: str
    llm_calls: int = 5
    tool_names: tuple[str | None, ...] = (LOOKUP,) * 4  # None: a tool call whose name was not sent
    args_identical: bool | None = True  # None: no arguments visible
    finish_reasons: tuple[str, ...] = ("tool_calls",) * 4 + ("stop",)
    exit_reason: str = "final_answer"
    signals: dict[str, str] = field(default_factory=lambda: {"TOOL_LOOP": "HIGH"})
    not_seen: tuple[str, ...] = ()  # what the run says it could not see
    status: str = "completed"
    runs: int = 1


LOOP = Expected(agent_id="order-support-agent")
OPENAI_V2 = replace(LOOP, agent_id="order-agent")  # the invoke_agent root span the script writes
# No content captured: the spans say a tool was asked for (finish reason) but not which, nor
# with what arguments, so no loop can be seen — and no REASONING_STALL either (the model acted).
OPENAI_V2_BLIND = replace(
    OPENAI_V2, tool_names=(None,) * 4, args_identical=None, signals={}, not_seen=("tool_names", "content")
)

EXPECTED: dict[str, Expected] = {
    # OpenLLMetry over LangGraph / LangChain: the create_agent span is a trace of its own and no run.
    "langgraph-openllmetry-openai": LOOP,
    "langchain-agent-openllmetry-openai": LOOP,
    "langgraph-openllmetry-anthropic": LOOP,  # finish reasons from the Anthropic SDK's own spans
    "langgraph-openinference-openai": LOOP,  # the root AGENT span is named after the graph
    "openllmetry-decorators-openai": LOOP,
    "agents-sdk-openllmetry": LOOP,  # the agent span's name, not the root's "Agent Workflow"
    "agents-sdk-openinference": LOOP,  # Responses API: "stop" with tool calls is tool_calls
    "pydantic-ai-openai": LOOP,
    "pydantic-ai-anthropic": LOOP,
    # LlamaIndex exports the FunctionAgent's name only inside content: the service name stands in.
    "llamaindex-openinference": replace(LOOP, agent_id="llamaindex-order-svc"),
    "crewai-openinference": replace(LOOP, agent_id="Order support agent"),  # the agent's role
    "openai-v2-none": OPENAI_V2_BLIND,
    "openai-v2-span-only": OPENAI_V2,
    "openai-v2-event-only": OPENAI_V2,
    "openai-v2-span-and-event": OPENAI_V2,
    "openai-v2-toolspans": OPENAI_V2,
    "openai-v2-legacy-events": OPENAI_V2,
    "openai-v2-legacy-events-linger": OPENAI_V2,
    # OpenLIT 1.34 / 1.36: content only in span events (gen_ai.content.prompt / .completion, plain
    # text), tool calls as a Python repr (1.34) or flattened onto the chat span (1.36); 1.45:
    # attributes plus operation-details log records.
    "openlit-openai": OPENAI_V2,
    "openlit-openai-1.36": OPENAI_V2,
    "openlit-openai-1.45": OPENAI_V2,
    # Strands: message events on the spans with Bedrock-style content blocks (toolUse, toolResult,
    # text), finish reasons only inside them; or, with the latest conventions, operation-details events.
    "strands-openai": LOOP,
    "strands-openai-latest": LOOP,
}


def clean(loop: Expected) -> Expected:
    """The same stack when the model asks for the tool once, then answers: nothing is wrong."""
    return replace(loop, tool_names=loop.tool_names[:1], finish_reasons=("tool_calls", "stop"), llm_calls=2, signals={})


# -clean: FAKE_LOOPS=1. No false signal on any stack.
EXPECTED.update({f"{name}-clean": clean(loop) for name, loop in list(EXPECTED.items()) if "linger" not in name})
# -empty: the model answers with empty text (finish stop): EMPTY_LLM_RESPONSE, and within the
# first two steps FIRST_STEP_FAILURE; a final answer by definition (stop, no tool asked for).
EMPTY_SIGNALS = {"EMPTY_LLM_RESPONSE": "HIGH", "FIRST_STEP_FAILURE": "MEDIUM"}
# -truncate: one answer cut off (finish length): one truncation is no LLM_TRUNCATION_LOOP (2).
for name in ("langgraph-openllmetry-anthropic", "openai-v2-span-only", "agents-sdk-openllmetry"):
    base = EXPECTED[name]
    EXPECTED[f"{name}-empty"] = replace(
        base, llm_calls=1, tool_names=(), args_identical=None, finish_reasons=("stop",), signals=EMPTY_SIGNALS
    )
    EXPECTED[f"{name}-truncate"] = replace(
        base,
        llm_calls=1,
        tool_names=(),
        args_identical=None,
        finish_reasons=("length",),
        exit_reason="completed",
        signals={},
    )
# pydantic-ai retries an empty answer once ("Please return text or call a tool"), then raises.
EXPECTED["pydantic-ai-anthropic-empty"] = replace(
    EXPECTED["langgraph-openllmetry-anthropic-empty"],
    llm_calls=2,
    finish_reasons=("stop", "stop"),
    exit_reason="error",
    status="errored",
)
EXPECTED["pydantic-ai-anthropic-truncate"] = EXPECTED["langgraph-openllmetry-anthropic-truncate"]
# The fake Responses API answers "completed" even when it cuts the text: nothing reports a truncation.
EXPECTED["agents-sdk-openllmetry-truncate"] = replace(
    EXPECTED["agents-sdk-openllmetry-truncate"], finish_reasons=("stop",), exit_reason="final_answer"
)
# No root span: every chat call is a trace, so a run, of its own (README: add a root span).
NOROOT_RUNS = [
    {
        "llm_calls": 1,
        "tool_names": [None],
        "finish_reasons": ["tool_calls"],
        "exit_reason": "completed",
        "not_seen": ["tool_names", "content"],
    },
] * 4 + [
    {
        "llm_calls": 1,
        "tool_names": [],
        "finish_reasons": ["stop"],
        "exit_reason": "final_answer",
        "not_seen": ["content"],
    }
]


def summary(run: dict[str, Any]) -> dict[str, Any]:
    events = run["events"]
    called = [e["payload"] for e in events if e["event_type"] == "tool.called"]
    hashes = {p.get("args_hash") for p in called}
    return {
        "agent_id": run["agent_id"],
        "llm_calls": run["llm_calls"],
        "tool_calls": run["tool_calls"],
        "tool_names": [p.get("tool_name") for p in called],
        "args_identical": None if hashes <= {None} else len(hashes) == 1,
        "finish_reasons": [e["payload"].get("finish_reason") for e in events if e["event_type"] == "llm.responded"],
        "exit_reason": run["exit_reason"],
        "signals": {s["failure_type"]: s["severity"] for s in run["signals"]},
        "not_seen": run["not_seen"],
    }


def expected_summary(expected: Expected) -> dict[str, Any]:
    return {
        "agent_id": expected.agent_id,
        "llm_calls": expected.llm_calls,
        "tool_calls": len(expected.tool_names),
        "tool_names": list(expected.tool_names),
        "args_identical": expected.args_identical,
        "finish_reasons": list(expected.finish_reasons),
        "exit_reason": expected.exit_reason,
        "signals": expected.signals,
        "not_seen": list(expected.not_seen),
    }


def delivered_runs(daemon: Sidecar, mapping: dict[str, str]) -> list[dict[str, Any]]:
    """The runs a delivery made, in start order (a trace that is no run answers 404)."""
    runs = []
    for run_id in mapping.values():
        result = daemon.api(f"/v1/runs/{run_id}")
        if result.status == 200 and result.json()["step_count"] > 0:
            runs.append(result.json())
        else:  # not a run: never seen, or stored without a step (never listed)
            assert result.status == 404 or result.json()["step_count"] == 0, (run_id, result.status)
            assert run_id not in {r["run_id"] for r in daemon.api_json("/v1/runs?limit=500")["runs"]}
    return sorted(runs, key=lambda r: r["started_at"])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    sidecar = Sidecar(tmp_path_factory.mktemp("stacks")).start()
    yield sidecar
    sidecar.close()


DELIVERIES = [(order, "http") for order in ORDERS] + [("as_captured", "grpc")]


def test_every_capture_has_an_expectation() -> None:
    on_disk = {p.name for p in STACKS.iterdir() if (p / "index.jsonl").exists()}
    assert on_disk == set(EXPECTED) | {"openai-v2-noroot", "openai-v2-noroot-clean"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize(("order", "transport"), DELIVERIES)
def test_stack_gives_the_right_run(daemon: Sidecar, name: str, order: str, transport: str) -> None:
    mapping = deliver(daemon, Capture.load(name), order, transport)
    runs = delivered_runs(daemon, mapping)
    expected = EXPECTED[name]
    assert len(runs) == expected.runs, [r["run_id"] for r in runs]
    assert summary(runs[0]) == expected_summary(expected)
    assert runs[0]["status"] == expected.status


@pytest.mark.parametrize(
    ("name", "expected"), [("openai-v2-noroot", NOROOT_RUNS), ("openai-v2-noroot-clean", NOROOT_RUNS[3:])]
)
@pytest.mark.parametrize(("order", "transport"), DELIVERIES)
def test_no_root_span_makes_a_run_per_call_and_no_false_signal(
    daemon: Sidecar, name: str, expected: list[dict[str, Any]], order: str, transport: str
) -> None:
    mapping = deliver(daemon, Capture.load(name), order, transport)
    runs = delivered_runs(daemon, mapping)
    got = [{k: v for k, v in summary(run).items() if k in NOROOT_RUNS[0]} for run in runs]
    assert got == expected
    assert {run["agent_id"] for run in runs} == {"openai-v2-order-svc"}  # the service name: no agent was named
    assert [s for run in runs for s in run["signals"]] == []


def test_the_agent_named_up_front_judges_live_signals(make_sidecar: Any, tmp_path: Path) -> None:
    """A gen_ai.agent.name resource attribute names the run from its first span: live signals,
    raised before the root arrives, carry that agent and its own thresholds."""
    config = tmp_path / "sidecar.yaml"
    config.write_text("detectors:\n  agents:\n    order-agent:\n      tool_loop: {threshold: 4}\n")
    daemon = make_sidecar(config_file=config)
    capture = Capture.load("openai-v2-span-only")
    for request in capture.traces:
        for rs in request.resource_spans:
            attribute = rs.resource.attributes.add()
            attribute.key = "gen_ai.agent.name"
            attribute.value.string_value = "order-agent"
    mapping = deliver(daemon, capture, "children_first")
    [run_id] = mapping.values()
    [signal] = daemon.api_json(f"/v1/signals?run_id={run_id}")["signals"]
    assert (signal["failure_type"], signal["agent_id"], signal["evidence"]["count"]) == ("TOOL_LOOP", "order-agent", 4)


def test_signals_follow_the_run_when_it_learns_its_agent(make_sidecar: Any) -> None:
    """Without a name up front, a live signal is raised under the service name; when the root
    names the agent, the stored signal follows the run. (A daemon of its own: the module's has
    seen the no-root runs of that service, a baseline that would add STEP_COUNT_INFLATION.)"""
    daemon = make_sidecar()
    capture = Capture.load("openai-v2-span-only")
    sent, mapping = plan(capture, "children_first")
    [run_id] = mapping.values()
    children, root = sent[0][1], sent[1][1]
    assert daemon.post_otlp(children).status == 200
    [live] = daemon.api_json(f"/v1/signals?run_id={run_id}")["signals"]
    assert (live["failure_type"], live["agent_id"]) == ("TOOL_LOOP", "openai-v2-order-svc")
    assert daemon.post_otlp(root).status == 200
    [settled] = daemon.api_json(f"/v1/signals?run_id={run_id}")["signals"]
    assert settled["agent_id"] == daemon.run(run_id)["agent_id"] == "order-agent"
    assert daemon.api_json("/v1/signals?agent_id=openai-v2-order-svc&run_id=" + run_id)["signals"] == []


def test_the_no_root_hint_is_logged_once_per_service(daemon: Sidecar) -> None:
    deliver(daemon, Capture.load("openai-v2-noroot"), "one_request")
    hint = "service openai-v2-order-svc sends LLM spans with no parent span"
    assert daemon.log_text().count(hint) == 1  # however many calls and deliveries (other tests sent more)


def test_content_after_a_restart_names_the_calls_without_phantoms(make_sidecar: Any) -> None:
    """Spans (no content: tool calls counted unnamed) → restart → the log records with the
    content: the same four calls are named, none added, and the loop is seen."""
    daemon = make_sidecar()
    capture = Capture.load("openai-v2-event-only")
    sent, mapping = plan(capture, "logs_last")
    [run_id] = mapping.values()
    traces = [body for signal, body in sent if signal == "traces"]
    logs = [body for signal, body in sent if signal == "logs"]
    for body in traces:
        assert daemon.post_otlp(body).status == 200
    before = summary(daemon.run(run_id))
    assert (before["tool_names"], before["signals"], before["not_seen"]) == ([None] * 4, {}, ["tool_names", "content"])
    daemon.stop()
    daemon.start()
    for body in logs:
        assert daemon.post_otlp(body, path="/v1/logs").status == 200
    assert summary(daemon.run(run_id)) == expected_summary(OPENAI_V2)


def test_an_alert_names_the_agent_its_run_learns(make_sidecar: Any) -> None:
    """Raised live under the service name, the alert waits for the agent: the webhook gets the
    name the root span gives, like the stored signal and the run."""
    from tests.fakes.receivers import Recorder
    from tests.sidecar import wait_for

    with Recorder(ok_body="") as hook:
        daemon = make_sidecar(env={"WEBHOOK_URL": hook.url, "DUNETRACE_ALERT_AGENT_WAIT": "30"})
        sent, mapping = plan(Capture.load("openai-v2-span-only"), "children_first")
        [run_id] = mapping.values()
        assert daemon.post_otlp(sent[0][1]).status == 200
        [live] = daemon.api_json(f"/v1/signals?run_id={run_id}")["signals"]
        assert live["agent_id"] == "openai-v2-order-svc"
        time.sleep(1.0)  # an alert that is not held reaches the receiver in ~10 ms
        assert hook.posts_mentioning(run_id) == []  # held: the agent may still be named
        assert daemon.post_otlp(sent[1][1]).status == 200
        [post] = wait_for(lambda: hook.posts_mentioning(run_id), what="the alert")
        assert post.json()["signal"]["agent_id"] == "order-agent" == daemon.run(run_id)["agent_id"]


# What the scripted agents sent, in every stack: the system prompt, the user's question, the
# tool's result and the final answer (tools/stacks/*.py, tools/stacks/fake_llm.py).
SENT_CONTENT = (
    "You help with orders",
    "Where is my order A123",
    "status unknown, try again",
    "has shipped and will arrive on Friday",
)


def test_no_stack_content_reaches_store_logs_or_api(make_sidecar: Any) -> None:
    daemon = make_sidecar(env={"DUNETRACE_LOG_LEVEL": "debug"})
    names = sorted(p.name for p in STACKS.iterdir() if (p / "index.jsonl").exists())
    corpus = b"".join(f.read_bytes() for name in names for f in (STACKS / name).glob("0*")).decode("latin-1")
    assert [c for c in SENT_CONTENT if c not in corpus] == []  # it was sent: the check below can fail
    run_ids = [run_id for name in names for run_id in deliver(daemon, Capture.load(name), "as_captured").values()]
    answers = [daemon.api("/v1/runs?limit=500").body, daemon.api("/v1/signals?limit=500").body]
    answers += [daemon.api(f"/v1/runs/{run_id}").body for run_id in run_ids]
    served = b"\n".join(answers).decode()
    assert "lookup_order" in served  # names are kept: only content goes
    daemon.stop()
    with duckdb.connect(str(daemon.db_path), read_only=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        stored = "\n".join(str(conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)
    stored += daemon.db_path.read_bytes().decode("latin-1")
    wal = daemon.db_path.with_name(daemon.db_path.name + ".wal")
    stored += wal.read_bytes().decode("latin-1") if wal.exists() else ""
    for place, text in (("api", served), ("store", stored), ("log", daemon.log_text())):
        assert [c for c in SENT_CONTENT if c in text] == [], place


def test_tool_spans_after_the_root_name_the_calls_no_content_counted(make_sidecar: Any) -> None:
    """No content on the LLM spans (tool calls counted unnamed at the run's end), the tool spans
    arriving after the root (another service's exporter): they name the calls, and the loop is
    seen (MEDIUM: no arguments were sent to compare)."""
    daemon = make_sidecar()
    sent, mapping = plan(Capture.load("openai-v2-toolspans"), "one_request")
    request = ExportTraceServiceRequest.FromString(sent[0][1])
    first, late = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    content = {"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions"}
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                kept = [kv for kv in span.attributes if kv.key not in content]
                del span.attributes[:]
                span.attributes.extend(kept)
                target = late if span.name.startswith("execute_tool") else first
                new_rs = target.resource_spans.add()
                new_rs.resource.CopyFrom(rs.resource)
                new_ss = new_rs.scope_spans.add()
                new_ss.scope.CopyFrom(ss.scope)
                new_ss.spans.append(span)
    assert daemon.post_otlp(first.SerializeToString()).status == 200
    assert daemon.post_otlp(late.SerializeToString()).status == 200
    [run_id] = mapping.values()
    run = summary(daemon.judged_run(run_id))
    assert (run["tool_names"], run["signals"], run["not_seen"]) == ([LOOKUP] * 4, {"TOOL_LOOP": "MEDIUM"}, ["content"])
