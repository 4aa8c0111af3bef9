"""Backpressure: when the store queue is full the receiver refuses with the retryable OTLP
answer (HTTP 503 + Retry-After + google.rpc.Status; gRPC UNAVAILABLE + RetryInfo in the
``google.rpc.retryinfo-bin`` trailer), never with a 500, and whatever it acknowledged is
stored (../shared/spec/otlp.md §2b, §3 pitfall 12).

The daemon here runs with DUNETRACE_MAX_QUEUED_EVENTS=1, so an export that arrives while
another export's batch waits for the store is refused. Bursts are bounded: at most
MAX_ROUNDS rounds of BURST concurrent exports per transport, stopping at the first round that
saw a refusal. Each export is the toolloop capture under a fresh trace id (4 LLM calls,
4 tool calls).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import pytest
import requests
from google.rpc import error_details_pb2, status_pb2
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.otel_sdk import RecordingExporter
from tests.sidecar import HttpResult, Sidecar, event_kinds, fixture_bytes, with_new_trace_ids

T = TypeVar("T")
PROTOBUF = "application/x-protobuf"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
STATUS_DETAILS_KEY = "grpc-status-details-bin"
BURST = 24  # concurrent exports per round
MAX_ROUNDS = 8  # at most 192 exports per transport
BURST_SECONDS = 30.0


@pytest.fixture(scope="module")
def squeezed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    daemon = Sidecar(tmp_path_factory.mktemp("backpressure-sidecar"), env={"DUNETRACE_MAX_QUEUED_EVENTS": "1"})
    yield daemon.start()
    daemon.close()


def fresh_toolloop() -> tuple[bytes, str]:
    body, mapping = with_new_trace_ids(fixture_bytes("openllmetry-openai-toolloop.pb"))
    [run_id] = mapping.values()
    return body, run_id


def assert_toolloop_run(daemon: Sidecar, run_id: str) -> None:
    """Stored right now (an acknowledged export is committed), complete, and only once."""
    run = daemon.run(run_id)
    assert run["status"] == "completed"
    assert run["llm_calls"] == 4
    assert run["tool_calls"] == 4
    assert len(run["events"]) == 18


@dataclass
class Outcome:
    body: bytes
    run_id: str
    result: Any


def all_at_once(send: Callable[[bytes], T], bodies: list[bytes]) -> list[T]:
    """Send every body from its own thread, released together by a barrier."""
    barrier = threading.Barrier(len(bodies))

    def one(body: bytes) -> T:
        barrier.wait(timeout=30)
        return send(body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


def bursts(send: Callable[[bytes], T], refused: Callable[[T], bool]) -> list[Outcome]:
    """Rounds of BURST simultaneous exports (each a new run) until one is refused; bounded."""
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + BURST_SECONDS
    for _ in range(MAX_ROUNDS):
        exports = [fresh_toolloop() for _ in range(BURST)]
        results = all_at_once(send, [body for body, _ in exports])
        outcomes += [Outcome(body, run_id, result) for (body, run_id), result in zip(exports, results, strict=True)]
        if any(refused(o.result) for o in outcomes) or time.monotonic() > deadline:
            break
    return outcomes


# --- OTLP/HTTP -----------------------------------------------------------------------------


def test_http_burst_is_refused_with_503_and_acknowledged_exports_are_stored(squeezed: Sidecar) -> None:
    outcomes = bursts(squeezed.post_otlp, lambda r: r.status == 503)
    statuses = Counter(o.result.status for o in outcomes)
    assert set(statuses) <= {200, 503}, statuses  # never 500: that one is not retried
    refused = [o for o in outcomes if o.result.status == 503]
    accepted = [o for o in outcomes if o.result.status == 200]
    assert refused, f"no 503 among {len(outcomes)} concurrent exports ({statuses})"
    assert accepted, statuses

    for outcome in refused:
        result: HttpResult = outcome.result
        assert int(result.headers["Retry-After"]) >= 1
        assert result.headers["Content-Type"].startswith(PROTOBUF)
        assert status_pb2.Status.FromString(result.body).message != ""
    for outcome in accepted:
        assert not ExportTraceServiceResponse.FromString(outcome.result.body).HasField("partial_success")
        assert_toolloop_run(squeezed, outcome.run_id)

    # A client that honours Retry-After gets through once the burst is over.
    time.sleep(max(int(o.result.headers["Retry-After"]) for o in refused))
    for outcome in refused:
        retry = squeezed.post_otlp(outcome.body)
        assert retry.status == 200, retry.body
        assert_toolloop_run(squeezed, outcome.run_id)


# --- OTLP/gRPC -----------------------------------------------------------------------------


@dataclass
class GrpcResult:
    code: grpc.StatusCode
    response: bytes
    trailers: dict[str, Any]


def grpc_sender(channel: grpc.Channel) -> Callable[[bytes], GrpcResult]:
    call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)

    def send(body: bytes) -> GrpcResult:
        try:
            response = call(body, timeout=30)
        except grpc.RpcError as exc:
            return GrpcResult(exc.code(), b"", dict(exc.trailing_metadata() or ()))
        return GrpcResult(grpc.StatusCode.OK, response, {})

    return send


def test_grpc_burst_is_refused_with_unavailable_and_retry_info(squeezed: Sidecar) -> None:
    with grpc.insecure_channel(squeezed.grpc_target) as channel:
        send = grpc_sender(channel)
        outcomes = bursts(send, lambda r: r.code == grpc.StatusCode.UNAVAILABLE)
        codes = Counter(o.result.code.name for o in outcomes)
        assert set(codes) <= {"OK", "UNAVAILABLE"}, codes  # never INTERNAL / UNKNOWN
        refused = [o for o in outcomes if o.result.code == grpc.StatusCode.UNAVAILABLE]
        accepted = [o for o in outcomes if o.result.code == grpc.StatusCode.OK]
        assert refused, f"no UNAVAILABLE among {len(outcomes)} concurrent exports ({codes})"
        assert accepted, codes

        delays = []
        for outcome in refused:
            trailers = outcome.result.trailers
            assert RETRY_INFO_KEY in trailers, trailers
            retry_info = error_details_pb2.RetryInfo.FromString(trailers[RETRY_INFO_KEY])
            assert retry_info.retry_delay.seconds >= 1
            delays.append(retry_info.retry_delay.seconds)
            status = status_pb2.Status.FromString(trailers[STATUS_DETAILS_KEY])
            assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
            assert [d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details] == [True]
        for outcome in accepted:
            assert not ExportTraceServiceResponse.FromString(outcome.result.response).HasField("partial_success")
            assert_toolloop_run(squeezed, outcome.run_id)

        time.sleep(max(delays))
        for outcome in refused:
            retry = send(outcome.body)
            assert retry.code == grpc.StatusCode.OK, retry
            assert_toolloop_run(squeezed, outcome.run_id)


# --- the real OpenTelemetry SDK HTTP exporter ------------------------------------------------


def agent_trace(tracer: trace.Tracer) -> str:
    """Workflow root → chat call → tool call; returns the run id (the trace id as a UUID)."""
    t0 = time.time_ns()
    ms = 1_000_000
    root = tracer.start_span("e2e-agent.workflow", start_time=t0, attributes={"traceloop.workflow.name": "e2e-agent"})
    context = trace.set_span_in_context(root)
    llm = tracer.start_span(
        "chat gpt-4o-mini",
        context=context,
        start_time=t0 + 1 * ms,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.response.finish_reasons": ("stop",),
        },
    )
    llm.end(end_time=t0 + 3 * ms)
    tool = tracer.start_span(
        "execute_tool lookup_order",
        context=context,
        start_time=t0 + 4 * ms,
        attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order"},
    )
    tool.end(end_time=t0 + 6 * ms)
    root.end(end_time=t0 + 10 * ms)
    return str(uuid.UUID(int=root.get_span_context().trace_id))


@dataclass
class AgentsOutcome:
    responses: Counter[int]  # HTTP status of every attempt the SDK exporters made
    results: list[str]  # SpanExportResult of every export
    run_ids: list[str]


def run_agents(daemon: Sidecar, workers: int, traces_each: int) -> AgentsOutcome:
    """``workers`` agents, each with its own TracerProvider + SimpleSpanProcessor + SDK HTTP
    exporter (3 exports per trace), start together and export ``traces_each`` traces each."""
    responses: Counter[int] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(workers)

    def count(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        with lock:
            responses[response.status_code] += 1

    def agent(index: int) -> tuple[list[str], list[str]]:
        session = requests.Session()
        session.hooks["response"].append(count)
        exporter = RecordingExporter(HttpSpanExporter(endpoint=daemon.http_url + "/v1/traces", session=session))
        provider = TracerProvider(resource=Resource.create({"service.name": f"contention-{index}"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("tests.backpressure")
        barrier.wait(timeout=30)
        run_ids = [agent_trace(tracer) for _ in range(traces_each)]
        provider.shutdown()
        return run_ids, exporter.results

    with ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(agent, range(workers)))
    results = [r for _, agent_results in done for r in agent_results]
    run_ids = [run_id for agent_run_ids, _ in done for run_id in agent_run_ids]
    return AgentsOutcome(responses, results, run_ids)


def assert_agent_runs_complete(daemon: Sidecar, run_ids: list[str]) -> None:
    incomplete = []
    for run_id in run_ids:
        result = daemon.api(f"/v1/runs/{run_id}")
        run = result.json() if result.status == 200 else None
        if not (
            run
            and run["agent_id"] == "e2e-agent"
            and run["status"] == "completed"
            and run["step_count"] == 2
            and event_kinds(run) == AGENT_RUN_EVENTS
        ):
            incomplete.append((run_id, result.status, run and event_kinds(run)))
    assert incomplete == [], f"{len(incomplete)} of {len(run_ids)} runs incomplete: {incomplete[:3]}"


AGENT_RUN_EVENTS = ["run.started", "llm.called", "llm.responded", "tool.called", "tool.responded", "run.completed"]


def test_sdk_http_exporter_delivers_every_trace_under_contention(squeezed: Sidecar) -> None:
    """3 agents export 7 traces each at once (63 exports) into the one-batch queue; refused
    exports are retried by the SDK after Retry-After until every one is acknowledged."""
    outcome = run_agents(squeezed, workers=3, traces_each=7)
    assert outcome.responses[503] >= 1, f"the SDK exporters were never refused: {outcome.responses}"
    assert set(outcome.responses) <= {200, 503}, outcome.responses
    assert outcome.results == ["SUCCESS"] * 63, Counter(outcome.results)
    assert len(set(outcome.run_ids)) == 21
    assert_agent_runs_complete(squeezed, outcome.run_ids)
