"""The throughput workload's runs as the published Dunetrace SDK (``dunetrace==0.5.7``) ships them
to ``POST /v1/ingest``: the same runs, not a second generator.

The runs are read back from the OTLP requests ``bench.workload.build_requests`` encodes (same
shapes, texts, loops, failures, truncations, and the OTLP trace id as the SDK run id), and each
span becomes the two events the SDK emits for that step of a ``with dt.run(...)`` agent loop
with ``dt.auto_instrument(["openai"])`` and the tools reported through ``run.tool_called`` /
``run.tool_responded`` (fixtures/dunetrace-sdk: ``scripts/a_run_loop.py``, ``wire.md`` §3):

=====================================  ==========================================================
OTLP span                              SDK events (step_index)
=====================================  ==========================================================
root ``bench_agent.workflow``          ``run.started`` (0): input_text = the workflow's input,
                                       system_prompt and model of its LLM calls, tools = every
                                       tool of the workload, sdk_version, instrumented,
                                       source_file; and ``run.completed`` (last step):
                                       total_steps, exit_reason ``completed`` (the runs end on
                                       a tool call or a cut-off answer: the loop never calls
                                       ``run.final_answer()``), tool_call_count
LLM span ``openai.chat``               ``llm.called`` (step + 1): model, prompt_tokens = the
                                       SDK's chars // 4 estimate of the messages, call_id,
                                       provider ``openai``, prompt_tokens_estimated; and
                                       ``llm.responded`` (same step): completion_tokens,
                                       latency_ms, output_length, finish_reason, output = the
                                       completion text, call_id, prompt_tokens (the usage figure)
tool span ``<tool>.tool``              ``tool.called`` (step + 1): tool_name, args (the kwargs as
                                       JSON); and ``tool.responded`` (same step): tool_name,
                                       success, output_length, latency_ms, output = the result
                                       (``""`` for a failed call, which also carries ``error``)
=====================================  ==========================================================

So every span is exactly two events: spans/s × 2 = events/s, and "per span" figures of the
OTLP transports and of ``ingest`` compare step for step. What differs is what the SDK puts on
the wire: its auto-instrumentation never sends the prompt (only its estimated token count),
so an LLM step carries the completion alone, where the OTLP span carries both (about 2.3 KB
of JSON a span here against 3.3 KB of protobuf); nor does it report the tool call an LLM
answer asks for (a part of the OTLP span's output messages), only the tool spans' calls.

Events keep their run order and go out in batches of at most 100, as the SDK's drain thread
takes them (``client.py:_drain_loop``); batches cross run boundaries. One OTLP request's runs
make one *group* of posts: a bench stream sends a group's posts in order, as one agent
process's drain thread would. Each post is what the SDK's ``HttpBatchingEmitter._post`` sends:
``json.dumps(envelope, default=str)`` (default separators, ASCII), the envelope
``{"api_key", "agent_id", "events"}``, the 11 keys per event, the headers ``Content-Type``,
``X-Dunetrace-Agent``, ``User-Agent``, ``Authorization: Bearer <key>`` and urllib's
``Connection: close`` (a new TCP connection per post); ``http.client`` adds ``Host``,
``Accept-Encoding: identity`` and ``Content-Length`` as urllib does. Timestamps are the spans'
(start for ``*.called`` and ``run.started``, end for the others); event ids are fresh uuid4s.
tests/test_bench_ingest_workload.py holds the posts to the SDK's capture and has the real SDK
replay the runs through its hooks: the same events but for ids, timestamps, latencies and
run.started's source_file and package versions.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

API_KEY = "bench-ingest-key-0123456789"  # the sidecar wants 16+ characters (DUNETRACE_API_KEYS)
SDK_VERSION = "0.5.7"
USER_AGENT = f"dunetrace-sdk-py/{SDK_VERSION}"
INSTRUMENTED = {"openai": "1.109.1"}  # run.started's fingerprint once auto_instrument patched openai
SOURCE_FILE = "agent.py"
BATCH_EVENTS = 100  # the SDK's drain(100)
TOOL_ERROR = "TimeoutError: the tool did not answer"  # str(exc) a failed tool call reports


@dataclass(frozen=True, slots=True)
class IngestPost:
    """One ``POST /v1/ingest`` as the SDK sends it."""

    body: bytes
    headers: dict[str, str]
    events: int


def ingest_groups(requests: list[bytes], api_key: str = API_KEY) -> list[list[IngestPost]]:
    """Per OTLP request (``bench.workload.build_requests``), the posts the SDK makes for its runs."""
    runs_per_request = [_runs(ExportTraceServiceRequest.FromString(body)) for body in requests]
    tools = sorted({s.attrs["gen_ai.tool.name"] for runs in runs_per_request for run in runs for s in run if s.tool})
    groups = []
    for runs in runs_per_request:
        events = [event for run in runs for event in run_events(run, tools)]
        groups.append([_post(events[i : i + BATCH_EVENTS], api_key) for i in range(0, len(events), BATCH_EVENTS)])
    return groups


def run_events(spans: list[_Span], tools: list[str]) -> list[dict[str, Any]]:
    """The SDK's events for one run (its spans, root included), in emission order."""
    root = next(s for s in spans if s.root)
    steps = sorted((s for s in spans if not s.root), key=lambda s: s.span.start_time_unix_nano)
    llm = [_llm(s.attrs) for s in steps if not s.tool]
    system_prompt = llm[0].system_prompt if llm else ""
    model = llm[0].model if llm else ""
    run_id = str(uuid.UUID(bytes=root.span.trace_id))
    agent_id = root.attrs["traceloop.workflow.name"]
    version = hashlib.sha256(f"{system_prompt}:{model}:{sorted(tools)}".encode()).hexdigest()[:8]

    def event(kind: str, step: int, ts_ns: int, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "event_type": kind,
            "run_id": run_id,
            "agent_id": agent_id,
            "agent_version": version,
            "step_index": step,
            "timestamp": ts_ns / 1e9,
            "payload": payload,
            "parent_run_id": None,
            "trace_id": None,
            "conversation_id": None,
            "event_id": str(uuid.uuid4()),
        }

    started = {
        "input_text": json.loads(root.attrs["traceloop.entity.input"])["args"][0],
        "system_prompt": system_prompt,
        "model": model,
        "tools": tools,
        "sdk_version": SDK_VERSION,
        "instrumented": INSTRUMENTED,
        "source_file": SOURCE_FILE,
    }
    out = [event("run.started", 0, root.span.start_time_unix_nano, started)]
    calls = iter(llm)
    call_id = tool_calls = 0
    for step, s in enumerate(steps, start=1):
        start, end = s.span.start_time_unix_nano, s.span.end_time_unix_nano
        latency_ms = (end - start) // 1_000_000
        if s.tool:
            tool_calls += 1
            name = s.attrs["gen_ai.tool.name"]
            args = json.dumps(json.loads(s.attrs["traceloop.entity.input"])["kwargs"], ensure_ascii=False)
            out.append(event("tool.called", step, start, {"tool_name": name, "args": args}))
            failed = s.span.status.code == Status.STATUS_CODE_ERROR
            output = "" if failed else s.attrs["traceloop.entity.output"]
            responded: dict[str, Any] = {
                "tool_name": name,
                "success": not failed,
                "output_length": len(output),
                "latency_ms": latency_ms,
                "output": output,
            }
            if failed:
                responded["error"] = TOOL_ERROR
            out.append(event("tool.responded", step, end, responded))
        else:
            call = next(calls)
            called = {
                "model": call.model,
                "prompt_tokens": max(1, sum(map(len, call.contents)) // 4),
                "call_id": call_id,
                "provider": "openai",
                "prompt_tokens_estimated": True,
            }
            out.append(event("llm.called", step, start, called))
            answered = {
                "completion_tokens": call.completion_tokens,
                "latency_ms": latency_ms,
                "output_length": len(call.output),
                "finish_reason": call.finish_reason,
                "output": call.output,
                "call_id": call_id,
                "prompt_tokens": call.prompt_tokens,
            }
            out.append(event("llm.responded", step, end, answered))
            call_id += 1
    completed = {"total_steps": len(steps), "exit_reason": "completed", "tool_call_count": tool_calls}
    out.append(event("run.completed", len(steps), root.span.end_time_unix_nano, completed))
    return out


def _post(events: list[dict[str, Any]], api_key: str) -> IngestPost:
    agent = events[0]["agent_id"]
    body = json.dumps({"api_key": api_key, "agent_id": agent, "events": events}, default=str).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Dunetrace-Agent": agent,
        "User-Agent": USER_AGENT,
        "Authorization": f"Bearer {api_key}",
        "Connection": "close",
    }
    return IngestPost(body, headers, len(events))


# --- reading the workload's spans back ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _LlmCall:
    model: str
    system_prompt: str
    contents: list[str]  # the request messages' contents (what the SDK's token estimate reads)
    output: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class _Span:
    span: Span
    attrs: dict[str, Any]
    root: bool
    tool: bool


def _runs(request: ExportTraceServiceRequest) -> list[list[_Span]]:
    runs: dict[bytes, list[_Span]] = {}
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                attrs = _attrs(span)
                read = _Span(span, attrs, not span.parent_span_id, attrs.get("traceloop.span.kind") == "tool")
                runs.setdefault(span.trace_id, []).append(read)
    return list(runs.values())


def _attrs(span: Span) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        which = kv.value.WhichOneof("value")
        if which == "array_value":
            out[kv.key] = [v.string_value for v in kv.value.array_value.values]
        elif which:
            out[kv.key] = getattr(kv.value, which)
    return out


def _llm(a: dict[str, Any]) -> _LlmCall:
    if "gen_ai.input.messages" in a:  # current gen_ai keys
        messages = json.loads(a["gen_ai.input.messages"])
        roles = [(m["role"], "".join(p["content"] for p in m["parts"] if p["type"] == "text")) for m in messages]
        answer = json.loads(a["gen_ai.output.messages"])[0]
        output = "".join(p["content"] for p in answer["parts"] if p["type"] == "text")
        finish = answer["finish_reason"]
    else:  # OpenLLMetry's flattened keys
        roles = []
        i = 0
        while f"gen_ai.prompt.{i}.role" in a:
            roles.append((a[f"gen_ai.prompt.{i}.role"], a[f"gen_ai.prompt.{i}.content"]))
            i += 1
        output = a["gen_ai.completion.0.content"]
        finish = a["gen_ai.completion.0.finish_reason"]
    return _LlmCall(
        model=a["gen_ai.request.model"],
        system_prompt=next((text for role, text in roles if role == "system"), ""),
        contents=[text for _, text in roles],
        output=output,
        finish_reason=finish,
        prompt_tokens=a["gen_ai.usage.input_tokens"],
        completion_tokens=a["gen_ai.usage.output_tokens"],
    )
