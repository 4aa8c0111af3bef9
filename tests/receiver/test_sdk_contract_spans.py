"""Our SDK's spans (docs/sdk-spans.md, scope ``dunetrace.sdk``) make the same runs as any other
instrumentation's: the receiver takes the ``dunetrace.*`` features the SDK reduced in the
agent's process instead of reducing content itself.

Requests are built by hand from the contract and sent to a real daemon over OTLP/HTTP and gRPC.
Every expected value is written out here: the hashes the SDK sent come back as they are, the
lengths and counts are the ones the spans carry, and the detectors judge the runs as usual
(TOOL_LOOP on identical argument hashes, PROMPT_INJECTION_SIGNAL from the injection labels,
RAG_EMPTY_RETRIEVAL from a result count of 0). A local policy that fired is one
``policy.triggered`` event, however often the root is delivered and across a restart.
Malformed ``dunetrace.*`` values are ignored, never the span.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.sidecar import Sidecar, new_trace_id, to_any

SCOPE = "dunetrace.sdk"
MS = 1_000_000


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# Hashes as the SDK computes them in the agent's process (the text never leaves it).
PROMPT_1 = sha("system: answer briefly\nuser: what is the weather in Paris?")
PROMPT_2 = sha("system: answer briefly\nuser: what is the weather in Paris?\ntool: 18C, light rain")
EMPTY = sha("")
ANSWER = sha("It is 18C with light rain in Paris.")
ARGS = sha('{"city":"Paris"}')
RESULT = sha("18C, light rain")
QUERY = sha("paris weather")


def attrs(values: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=to_any(value)) for key, value in values.items()]


@dataclass
class SdkRun:
    """One run as our SDK records it: a root ``invoke_agent`` span and its children."""

    agent: str
    trace_id: bytes = field(default_factory=new_trace_id)
    root_id: bytes = field(default_factory=lambda: os.urandom(8))
    base_ns: int = field(default_factory=lambda: time.time_ns() - 60_000 * MS)
    children: list[Span] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(uuid.UUID(bytes=self.trace_id))

    def child(self, name: str, start_ms: int, end_ms: int, values: Mapping[str, Any], kind: int = 3) -> Span:
        span = Span(
            trace_id=self.trace_id,
            span_id=os.urandom(8),
            parent_span_id=self.root_id,
            name=name,
            kind=kind,  # CLIENT unless said otherwise
            start_time_unix_nano=self.base_ns + start_ms * MS,
            end_time_unix_nano=self.base_ns + end_ms * MS,
        )
        span.attributes.extend(attrs(values))
        self.children.append(span)
        return span

    def chat(self, start_ms: int, end_ms: int, **features: Any) -> Span:
        values = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.provider.name": "openai"}
        return self.child("chat gpt-4o", start_ms, end_ms, values | dunetrace(features))

    def tool(self, name: str, start_ms: int, end_ms: int, **features: Any) -> Span:
        values = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
        return self.child(f"execute_tool {name}", start_ms, end_ms, values | dunetrace(features), kind=1)

    def retrieval(self, index: str, start_ms: int, end_ms: int, **features: Any) -> Span:
        values = {"gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": index}
        return self.child(f"retrieval {index}", start_ms, end_ms, values | dunetrace(features))

    def root(
        self,
        end_ms: int,
        error_type: str | None = None,
        policies: Sequence[tuple[int, Mapping[str, Any]]] = (),
        **features: Any,
    ) -> Span:
        span = Span(
            trace_id=self.trace_id,
            span_id=self.root_id,
            name=f"invoke_agent {self.agent}",
            kind=1,
            start_time_unix_nano=self.base_ns,
            end_time_unix_nano=self.base_ns + end_ms * MS,
        )
        values = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": self.agent}
        if error_type is not None:
            values["error.type"] = error_type
            span.status.code = Status.STATUS_CODE_ERROR
        span.attributes.extend(attrs(values | dunetrace(features)))
        for at_ms, policy in policies:
            event = span.events.add(name="dunetrace.policy.triggered", time_unix_nano=self.base_ns + at_ms * MS)
            event.attributes.extend(attrs({f"dunetrace.policy.{key}": value for key, value in policy.items()}))
        return span


def dunetrace(features: Mapping[str, Any]) -> dict[str, Any]:
    """``prompt__hash=…`` → ``dunetrace.prompt.hash``; ``finish_reasons`` / ``input_tokens`` /
    ``output_tokens`` / ``tool_call_id`` are the GenAI attributes of those names."""
    genai = {
        "finish_reasons": "gen_ai.response.finish_reasons",
        "input_tokens": "gen_ai.usage.input_tokens",
        "output_tokens": "gen_ai.usage.output_tokens",
        "tool_call_id": "gen_ai.tool.call.id",
    }
    return {genai.get(key) or "dunetrace." + key.replace("__", "."): value for key, value in features.items()}


def request_of(spans: list[Span], scope: str = SCOPE) -> bytes:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.extend(attrs({"service.name": "sdk-contract-tests"}))
    scope_spans = resource.scope_spans.add()
    scope_spans.scope.name = scope
    scope_spans.scope.version = "0.1.0"
    scope_spans.spans.extend(spans)
    return request.SerializeToString()


def send(daemon: Sidecar, body: bytes, transport: str = "http") -> ExportTraceServiceResponse:
    if transport == "grpc":
        response = ExportTraceServiceResponse.FromString(daemon.grpc_export(body))
    else:
        result = daemon.post_otlp(body)
        assert result.status == 200, result.body
        response = ExportTraceServiceResponse.FromString(result.body)
    assert response.partial_success.rejected_spans == 0, response
    return response


def events_of(run: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in run["events"] if e["event_type"] == kind]


def without_latency(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key != "latency_ms"}


def signals_of(run: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["failure_type"]: s for s in run["signals"]}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    sidecar = Sidecar(Path(tmp_path_factory.mktemp("sdk-spans")), env={"DUNETRACE_END_GRACE": "0.2"}).start()
    yield sidecar
    sidecar.close()


# --- the features become the run's events --------------------------------------------------


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_features_become_the_payloads_the_receiver_makes_from_content(daemon: Sidecar, transport: str) -> None:
    run = SdkRun("weather-agent")
    first = run.chat(
        10,
        110,
        prompt__hash=PROMPT_1,
        prompt__length=58,
        output__hash=EMPTY,
        output__length=0,
        tool_requests__names=["get_weather"],
        tool_requests__ids=["call_1"],
        tool_requests__args_hashes=[ARGS],
        finish_reasons=["tool_calls"],
        input_tokens=120,
        output_tokens=20,
    )
    tool = run.tool(
        "get_weather",
        120,
        170,
        tool_call_id="call_1",
        tool__args__hash=ARGS,
        tool__args__length=17,
        tool__result__hash=RESULT,
        tool__result__length=15,
    )
    retrieval = run.retrieval(
        "docs",
        180,
        200,
        retrieval__query__hash=QUERY,
        retrieval__query__length=13,
        retrieval__result_count=3,
        retrieval__top_score=0.82,
    )
    second = run.chat(
        210,
        310,
        prompt__hash=PROMPT_2,
        prompt__length=80,
        output__hash=ANSWER,
        output__length=35,
        finish_reasons=["stop"],
        input_tokens=150,
        output_tokens=30,
    )
    root = run.root(500, exit_reason="final_answer", agent__version="v7")
    send(daemon, request_of([first, tool, retrieval, second, root]), transport)

    got = daemon.judged_run(run.run_id)
    summary = {key: got[key] for key in ("agent_id", "status", "exit_reason", "llm_calls", "tool_calls")}
    assert summary == {
        "agent_id": "weather-agent",
        "status": "completed",
        "exit_reason": "final_answer",
        "llm_calls": 2,
        "tool_calls": 1,
    }
    assert (got["retrievals"], got["step_count"], got["prompt_tokens"], got["completion_tokens"]) == (1, 4, 270, 50)
    root_hex, first_hex, second_hex = run.root_id.hex(), first.span_id.hex(), second.span_id.hex()
    assert [(e["event_type"], without_latency(e["payload"])) for e in got["events"]] == [
        ("run.started", {"model": "gpt-4o", "tools": [], "agent_version": "v7"}),
        (
            "llm.called",
            {
                "model": "gpt-4o",
                "provider": "openai",
                "prompt_tokens": 120,
                "prompt_hash": PROMPT_1,
                "prompt_length": 58,
                "call_id": first_hex,
                "parent_span_id": root_hex,
            },
        ),
        (
            "llm.responded",
            {
                "finish_reason": "tool_calls",
                "completion_tokens": 20,
                "output_length": 0,
                "output_hash": EMPTY,
                "tool_calls_requested": ["get_weather"],
                "tool_requests": [{"call_id": "call_1", "name": "get_weather", "args_hash": ARGS}],
            },
        ),
        (
            "tool.called",
            {
                "tool_name": "get_weather",
                "args_hash": ARGS,
                "args_length": 17,
                "call_id": tool.span_id.hex(),
                "tool_call_id": "call_1",
            },
        ),
        ("tool.responded", {"tool_name": "get_weather", "success": True, "output_length": 15, "output_hash": RESULT}),
        (
            "retrieval.called",
            {"index_name": "docs", "query_hash": QUERY, "query_length": 13, "call_id": retrieval.span_id.hex()},
        ),
        ("retrieval.responded", {"index_name": "docs", "result_count": 3, "top_score": 0.82}),
        (
            "llm.called",
            {
                "model": "gpt-4o",
                "provider": "openai",
                "prompt_tokens": 150,
                "prompt_hash": PROMPT_2,
                "prompt_length": 80,
                "call_id": second_hex,
                "parent_span_id": root_hex,
            },
        ),
        (
            "llm.responded",
            {
                "finish_reason": "stop",
                "completion_tokens": 30,
                "output_length": 35,
                "output_hash": ANSWER,
                "tool_calls_requested": [],
                "tool_requests": [],
            },
        ),
        ("run.completed", {"exit_reason": "final_answer", "total_steps": 4}),
    ]
    latencies = [e["payload"].get("latency_ms") for e in got["events"] if e["event_type"].endswith(".responded")]
    assert latencies == [100.0, 50.0, 20.0, 100.0]
    assert got["signals"] == []


def test_identical_args_hashes_make_a_tool_loop(daemon: Sidecar) -> None:
    run = SdkRun("looping-agent")
    spans = []
    for i in range(4):  # the model asks for the same search four times; each runs
        at = i * 100
        spans.append(
            run.chat(
                at + 10,
                at + 50,
                prompt__hash=sha(f"prompt {i}"),
                prompt__length=100 + i,
                output__hash=EMPTY,
                output__length=0,
                tool_requests__names=["search"],
                tool_requests__ids=[f"call_{i}"],
                tool_requests__args_hashes=[ARGS],
                finish_reasons=["tool_calls"],
            )
        )
        spans.append(
            run.tool(
                "search",
                at + 60,
                at + 90,
                tool_call_id=f"call_{i}",
                tool__args__hash=ARGS,
                tool__args__length=17,
                tool__result__hash=RESULT,
                tool__result__length=15,
            )
        )
    spans.append(run.chat(410, 450, output__hash=ANSWER, output__length=35, finish_reasons=["stop"]))
    spans.append(run.root(500))
    send(daemon, request_of(spans), "grpc")

    got = daemon.judged_run(run.run_id)
    assert (got["llm_calls"], got["tool_calls"], got["exit_reason"]) == (5, 4, "final_answer")
    assert [p["args_hash"] for p in events_of(got, "tool.called")] == [ARGS] * 4
    loop = signals_of(got)["TOOL_LOOP"]
    assert loop["severity"] == "HIGH"
    assert (loop["evidence"]["tool"], loop["evidence"]["args_identical"]) == ("search", True)


def test_injection_labels_raise_prompt_injection(daemon: Sidecar) -> None:
    run = SdkRun("injected-agent")
    chat = run.chat(
        10,
        50,
        prompt__hash=PROMPT_1,
        prompt__length=57,
        output__hash=EMPTY,
        output__length=0,
        injection__patterns=["ignore_instructions", "you_are_now"],
        injection__source="input",
        injection__input_length=57,
        tool_requests__names=["fetch_page"],
        tool_requests__ids=[""],  # no id from the provider
        tool_requests__args_hashes=[ARGS],
        finish_reasons=["tool_calls"],
    )
    tool = run.tool(
        "fetch_page",
        60,
        90,
        tool__args__hash=ARGS,
        tool__args__length=17,
        tool__result__hash=RESULT,
        tool__result__length=900,
        injection__patterns=["system_tag"],
        injection__source="tool_result",
        injection__input_length=900,
    )
    answer = run.chat(100, 150, output__hash=ANSWER, output__length=35, finish_reasons=["stop"])
    send(daemon, request_of([chat, tool, answer, run.root(200)]))

    got = daemon.judged_run(run.run_id)
    from_input = {
        "matched_patterns": ["ignore_instructions", "you_are_now"],
        "matched_pattern_count": 2,
        "input_length": 57,
        "source": "input",
    }
    from_tool = {
        "matched_patterns": ["system_tag"],
        "matched_pattern_count": 1,
        "input_length": 900,
        "source": "tool_result",
    }
    assert events_of(got, "llm.called")[0]["injection"] == from_input
    assert [p.get("injection") for p in events_of(got, "tool.responded")] == [from_tool]
    # the request without an id is answered by the tool span of its name: one call, not two
    assert got["tool_calls"] == 1
    assert events_of(got, "llm.responded")[0]["tool_requests"] == [{"name": "fetch_page", "args_hash": ARGS}]
    signal = signals_of(got)["PROMPT_INJECTION_SIGNAL"]
    assert signal["severity"] == "CRITICAL"
    assert signal["evidence"] == {
        "matched_patterns": ["ignore_instructions", "you_are_now"],
        "matched_pattern_count": 2,
        "source": "input",
        "input_length": 57,
    }


def test_result_count_zero_before_an_answer_is_an_empty_retrieval(daemon: Sidecar) -> None:
    run = SdkRun("rag-agent")
    retrieval = run.retrieval(
        "kb", 10, 30, retrieval__query__hash=QUERY, retrieval__query__length=13, retrieval__result_count=0
    )
    answer = run.chat(
        40,
        90,
        prompt__hash=PROMPT_1,
        prompt__length=58,
        output__hash=ANSWER,
        output__length=35,
        finish_reasons=["stop"],
    )
    send(daemon, request_of([retrieval, answer, run.root(100)]), "grpc")

    got = daemon.judged_run(run.run_id)
    assert [without_latency(p) for p in events_of(got, "retrieval.responded")] == [
        {"index_name": "kb", "result_count": 0}
    ]
    assert got["exit_reason"] == "final_answer"
    assert signals_of(got)["RAG_EMPTY_RETRIEVAL"]["evidence"] == {
        "index_name": "kb",
        "result_count": 0,
        "top_score": None,
        "bad_retrievals": 1,
    }


# --- local policies and the exit reason ----------------------------------------------------

STOP_POLICY = {
    "id": -1,
    "name": "at most 3 tool calls",
    "trigger": "tool_call_count",
    "operator": "gt",
    "value": "3",
    "observed": "4",
    "action": "stop",
}
STOP_PAYLOAD = {
    "policy_id": -1,
    "policy_name": "at most 3 tool calls",
    "action_type": "stop",
    "action_params": {},
    "trigger": "tool_call_count",
    "operator": "gt",
    "value": 3,
    "observed": 4,
    "source": "sdk",
}


def stopped_run() -> tuple[SdkRun, list[Span]]:
    """Four tool calls, then the SDK's policy stops the run (the agent raised)."""
    run = SdkRun("stopped-agent")
    spans = []
    for i in range(4):
        at = i * 100
        spans.append(
            run.chat(
                at + 10,
                at + 40,
                output__hash=EMPTY,
                output__length=0,
                tool_requests__names=[f"step_{i}"],
                tool_requests__ids=[f"call_{i}"],
                tool_requests__args_hashes=[sha(str(i))],
                finish_reasons=["tool_calls"],
            )
        )
        spans.append(run.tool(f"step_{i}", at + 50, at + 80, tool_call_id=f"call_{i}", tool__args__hash=sha(str(i))))
    spans.append(
        run.root(420, error_type="PolicyViolation", policies=[(390, STOP_POLICY)], exit_reason="policy_violation")
    )
    return run, spans


def test_a_policy_event_is_recorded_once_and_survives_a_restart(make_sidecar: Callable[..., Sidecar]) -> None:
    daemon = make_sidecar(env={"DUNETRACE_END_GRACE": "0.2"})
    run, spans = stopped_run()
    root = spans[-1]
    send(daemon, request_of(spans))
    send(daemon, request_of([root]), "grpc")  # the root delivered again
    send(daemon, request_of(spans))  # and the whole trace

    def check() -> dict[str, Any]:
        got: dict[str, Any] = daemon.judged_run(run.run_id)
        assert (got["status"], got["exit_reason"], got["tool_calls"]) == ("errored", "policy_violation", 4)
        assert events_of(got, "policy.triggered") == [STOP_PAYLOAD]
        assert events_of(got, "run.errored") == [
            {"error_type": "PolicyViolation", "total_steps": 8, "exit_reason": "policy_violation"}
        ]
        return got

    check()
    daemon.stop()
    daemon.start()
    check()  # restored from the store
    send(daemon, request_of(spans), "grpc")  # delivered again after the restart
    late = run.chat(405, 415, output__hash=ANSWER, output__length=35, finish_reasons=["stop"])
    send(daemon, request_of([late]))  # a call that reaches the sidecar after the restart
    got = check()
    assert got["llm_calls"] == 5


def test_a_root_that_did_not_raise_keeps_the_declared_policy_violation(daemon: Sidecar) -> None:
    run = SdkRun("halted-agent")
    chat = run.chat(
        10,
        40,
        output__hash=EMPTY,
        output__length=0,
        tool_requests__names=["delete_rows"],
        tool_requests__ids=["call_1"],
        tool_requests__args_hashes=[ARGS],
        finish_reasons=["tool_calls"],
    )
    policy = STOP_POLICY | {"id": -7, "name": "no deletes", "trigger": "tool_call_count", "observed": "1"}
    send(daemon, request_of([chat, run.root(60, policies=[(50, policy)], exit_reason="policy_violation")]))
    # a call that ended after the root, exported late: it would make a final answer
    send(daemon, request_of([run.chat(61, 70, output__hash=ANSWER, output__length=35, finish_reasons=["stop"])]))

    got = daemon.judged_run(run.run_id)
    assert (got["status"], got["exit_reason"]) == ("completed", "policy_violation")
    assert events_of(got, "run.completed") == [{"exit_reason": "policy_violation", "total_steps": 2}]
    assert events_of(got, "policy.triggered") == [
        STOP_PAYLOAD | {"policy_id": -7, "policy_name": "no deletes", "observed": 1}
    ]


# --- malformed and foreign values ----------------------------------------------------------


def test_malformed_values_are_ignored_not_the_span(daemon: Sidecar) -> None:
    bad = SdkRun("sloppy-agent")
    chat = bad.chat(
        10,
        50,
        prompt__hash="sha256:" + "G" * 64,  # not hex
        prompt__length=-5,
        output__hash=12,
        output__length="abc",
        tool_requests__names="search",  # not an array
        injection__patterns=[1, 2.5],  # no labels
        injection__source="input",
        finish_reasons=["stop"],
        input_tokens=30,
    )
    tool = bad.tool(
        "search",
        60,
        80,
        tool__args__hash="sha256:" + "AB" * 32,  # upper case
        tool__args__length=2**40,
        tool__result__hash=[RESULT],
        tool__result__length=1e300,
    )
    retrieval = bad.retrieval(
        "kb",
        90,
        95,
        retrieval__query__hash="md5:" + "a" * 32,
        retrieval__query__length=13.0,  # a whole float is a count, as everywhere
        retrieval__result_count="many",
        retrieval__top_score="NaN",
    )
    policies = [
        (96, STOP_POLICY | {"id": 5}),  # a sidecar policy's id: not the SDK's to claim
        (97, STOP_POLICY | {"id": "x"}),
        (98, {"id": -2, "name": "slow llm", "trigger": "llm_latency_ms", "operator": "gt", "value": "{not json"}),
    ]
    root = bad.root(100, policies=policies, exit_reason="exploded", agent__version="v1")
    good = SdkRun("tidy-agent")
    good_chat = good.chat(10, 50, prompt__hash=PROMPT_1, prompt__length=58, output__hash=ANSWER, output__length=35)
    send(daemon, request_of([chat, tool, retrieval, root, good_chat, good.root(60)]))

    got = daemon.judged_run(bad.run_id)
    assert (got["llm_calls"], got["tool_calls"], got["retrievals"], got["status"]) == (1, 1, 1, "completed")
    assert got["exit_reason"] == "final_answer"  # "exploded" is no exit reason: the answer decides
    assert [without_latency(p) for p in events_of(got, "llm.called")] == [
        {
            "model": "gpt-4o",
            "provider": "openai",
            "prompt_tokens": 30,
            "call_id": chat.span_id.hex(),
            "parent_span_id": bad.root_id.hex(),
        }
    ]
    assert [without_latency(p) for p in events_of(got, "llm.responded")] == [
        {"finish_reason": "stop", "tool_calls_requested": [], "tool_requests": []}
    ]
    assert events_of(got, "tool.called") == [{"tool_name": "search", "call_id": tool.span_id.hex()}]
    assert [without_latency(p) for p in events_of(got, "tool.responded")] == [{"tool_name": "search", "success": True}]
    assert events_of(got, "retrieval.called") == [
        {"index_name": "kb", "query_length": 13, "call_id": retrieval.span_id.hex()}
    ]
    assert [without_latency(p) for p in events_of(got, "retrieval.responded")] == [{"index_name": "kb"}]
    assert events_of(got, "policy.triggered") == [
        {
            "policy_id": -2,
            "policy_name": "slow llm",
            "action_params": {},
            "trigger": "llm_latency_ms",
            "operator": "gt",
            "source": "sdk",
        }
    ]
    assert "PROMPT_INJECTION_SIGNAL" not in signals_of(got)
    tidy = daemon.judged_run(good.run_id)
    assert events_of(tidy, "llm.called")[0]["prompt_hash"] == PROMPT_1


def test_arrays_are_bounded(daemon: Sidecar) -> None:
    run = SdkRun("chatty-agent")
    names = [f"tool_{i}" for i in range(1000)]
    chat = run.chat(
        10,
        50,
        output__hash=EMPTY,
        output__length=0,
        tool_requests__names=names,
        tool_requests__ids=[f"call_{i}" for i in range(1000)],
        tool_requests__args_hashes=[ARGS] * 1000,
        injection__patterns=[f"label_{i}" for i in range(1000)],
        finish_reasons=["tool_calls"],
    )
    send(daemon, request_of([chat, run.root(60)]))

    got = daemon.judged_run(run.run_id)
    [responded] = events_of(got, "llm.responded")
    assert responded["tool_calls_requested"] == names[:128]
    assert got["tool_calls"] == 128  # no tool span answered them: each request is a call
    injection = events_of(got, "llm.called")[0]["injection"]
    assert (injection["matched_pattern_count"], injection["source"], injection["input_length"]) == (128, "input", 0)


def test_another_instrumentations_dunetrace_attributes_are_not_read(daemon: Sidecar) -> None:
    run = SdkRun("other-agent")
    chat = run.chat(
        10,
        50,
        prompt__hash=PROMPT_1,
        prompt__length=58,
        injection__patterns=["jailbreak"],
        finish_reasons=["stop"],
    )
    root = run.root(60, policies=[(55, STOP_POLICY)], exit_reason="policy_violation")
    send(daemon, request_of([chat, root], scope="acme.agents"))

    got = daemon.judged_run(run.run_id)
    assert (got["llm_calls"], got["status"], got["exit_reason"]) == (1, "completed", "final_answer")
    [called] = events_of(got, "llm.called")
    assert "prompt_hash" not in called and "injection" not in called
    assert events_of(got, "policy.triggered") == []
    assert got["signals"] == []


def test_a_run_our_sdk_opened_is_listed_steps_or_not(daemon: Sidecar) -> None:
    """A request that failed before its agent took a step is still a run of ours (the middleware's
    500, say): listed, source sdk. The same root from another instrumentation is not a run."""
    ours = SdkRun("stepless-agent")
    send(daemon, request_of([ours.root(50, error_type="HTTPServerError")]))
    theirs = SdkRun("stepless-agent")
    send(daemon, request_of([theirs.root(50, error_type="HTTPServerError")], scope="some.other.instrumentation"))

    run = daemon.wait_run(ours.run_id, lambda r: r["status"] != "running")
    assert (run["status"], run["source"], run["step_count"]) == ("errored", "sdk", 0)
    listed = [r["run_id"] for r in daemon.api_json("/v1/runs?agent_id=stepless-agent")["runs"]]
    assert listed == [ours.run_id]
    agents = {a["agent_id"]: a for a in daemon.api_json("/v1/agents")["agents"]}
    assert (agents["stepless-agent"]["run_count"], agents["stepless-agent"]["failed_runs"]) == (1, 1)
