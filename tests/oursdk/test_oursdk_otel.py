"""Our SDK's OpenTelemetry integrations, from the docs' "OpenTelemetry" and "OpenLLMetry / OTel
receiver" code blocks run verbatim (tests/oursdk/scripts/otel_*.py) against a real daemon.

Every OTLP request the scripts send goes through one local port that keeps a copy: OTLP/HTTP (our
SDK's own export) to a tee in front of the daemon's HTTP receiver, OTLP/gRPC (the user's provider:
the docs' ``OTLPSpanExporter()``) to a gRPC tee in front of the daemon's gRPC receiver — so the
sidecar receives each run twice, as it would with the docs' setup, and the test sees both copies."""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import duckdb
import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.fakes.llm_servers import FakeOpenAI, Reply
from tests.fakes.tee_proxy import TeeProxy
from tests.oursdk.harness import run_script
from tests.sdk.harness import API_KEY, Api, signal_types
from tests.sidecar import Sidecar

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
HTTP2_PREFACE = b"PRI * HTTP/2.0"
STATUS_ERROR = 2


class GrpcTee:
    """OTLP/gRPC traces on 127.0.0.1: keeps each request and forwards it to the daemon."""

    def __init__(self, target: str) -> None:
        self.bodies: list[bytes] = []
        self._channel = grpc.insecure_channel(target)
        forward = self._channel.unary_unary(
            f"/{TRACE_SERVICE}/Export", request_serializer=None, response_deserializer=None
        )

        def export(body: bytes, context: grpc.ServicerContext) -> bytes:
            self.bodies.append(body)
            return forward(body, timeout=10)  # type: ignore[no-any-return]

        handler = grpc.method_handlers_generic_handler(
            TRACE_SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(export)}
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[handler])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def requests(self) -> list[ExportTraceServiceRequest]:
        out = []
        for body in list(self.bodies):
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            out.append(request)
        return out

    def close(self) -> None:
        self.server.stop(grace=None)
        self._channel.close()


class SplitPort:
    """One 127.0.0.1 port for OTEL_EXPORTER_OTLP_ENDPOINT, which both the OTLP/HTTP and the
    OTLP/gRPC exporters read: a connection that opens with the HTTP/2 preface goes to ``grpc_port``,
    any other to ``http_port``."""

    def __init__(self, http_port: int, grpc_port: int) -> None:
        self._ports = (http_port, grpc_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.5)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="split-port", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._route, args=(client,), daemon=True).start()

    def _route(self, client: socket.socket) -> None:
        client.settimeout(10)
        try:
            head = b""
            for _ in range(50):  # bounded: the preface arrives in the first packet
                head = client.recv(len(HTTP2_PREFACE), socket.MSG_PEEK)
                if len(head) >= len(HTTP2_PREFACE) or not head:
                    break
            port = self._ports[1] if head.startswith(HTTP2_PREFACE) else self._ports[0]
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            client.close()
            return
        client.settimeout(None)
        upstream.settimeout(None)
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Wire:
    """What left the script: ``ours`` (OTLP/HTTP bodies) and ``users`` (OTLP/gRPC requests)."""

    def __init__(self, daemon: Sidecar) -> None:
        self.http = TeeProxy(daemon.http_url)
        self.grpc = GrpcTee(daemon.grpc_target)
        self.split = SplitPort(int(self.http.url.rsplit(":", 1)[1]), self.grpc.port)

    def env(self) -> dict[str, str]:
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.split.url, "OTEL_EXPORTER_OTLP_INSECURE": "true"}

    def ours(self) -> list[ExportTraceServiceRequest]:
        out = []
        for body in self.http.bodies:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            out.append(request)
        return out

    def close(self) -> None:
        self.split.close()
        self.grpc.close()
        self.http.close()


def spans_of(requests: list[ExportTraceServiceRequest]) -> list[dict[str, Any]]:
    """Every span as a dict: scope, service, ids (hex), name, parent, status code, attributes."""
    out = []
    for request in requests:
        for resource in request.resource_spans:
            service = {kv.key: _value(kv.value) for kv in resource.resource.attributes}.get("service.name")
            for scope in resource.scope_spans:
                for span in scope.spans:
                    out.append(
                        {
                            "scope": scope.scope.name,
                            "service": service,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "name": span.name,
                            "status": span.status.code,
                            "attributes": {kv.key: _value(kv.value) for kv in span.attributes},
                        }
                    )
    return out


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def settled(daemon: Sidecar, run_id: str) -> Any:
    """The run once it has ended and its end-of-run detectors have been asked."""
    return daemon.wait_run(run_id, lambda r: r["status"] != "running" and not r.get("end_pending"), timeout=20)


def signal_attributes(span: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in span["attributes"].items() if k.startswith("dunetrace.signal.")}


@pytest.fixture
def wire(oursdk_daemon: Sidecar) -> Iterator[Wire]:
    proxy = Wire(oursdk_daemon)
    yield proxy
    proxy.close()


# --- the docs' "OpenTelemetry" block: runs also go to the user's provider ----------------------


def test_docs_otel_block_copies_runs_with_their_signals(
    oursdk_stacks_python: Path, oursdk_daemon: Sidecar, wire: Wire
) -> None:
    out = run_script(oursdk_stacks_python, "otel_exporter", oursdk_daemon, extra_env=wire.env())
    loop_id, healthy_id = out.result["loop"], out.result["healthy"]
    assert out.result["loop_signals"] == [["TOOL_LOOP", "HIGH"]]
    # a loop early in a long run is still found: every event went through the detectors
    assert "TOOL_LOOP" in out.result["long_signals"]

    ours = spans_of(wire.ours())
    users = spans_of(wire.grpc.requests())
    for run_id, steps in ((loop_id, 9), (healthy_id, 3)):
        trace_id = uuid.UUID(run_id).hex
        mine = [s for s in ours if s["trace_id"] == trace_id]
        theirs = [s for s in users if s["trace_id"] == trace_id]
        # the user's provider got every span of the run: same trace id (the run id), same span ids
        # and parents, its own resource, the scope the sidecar leaves out
        assert len(mine) == steps + 1
        assert sorted((s["span_id"], s["parent"], s["name"]) for s in theirs) == sorted(
            (s["span_id"], s["parent"], s["name"]) for s in mine
        )
        assert {s["scope"] for s in mine} == {"dunetrace.sdk"}
        assert {(s["scope"], s["service"]) for s in theirs} == {("dunetrace", "my-agent-service")}
        for span in mine:  # our own copy carries no signal and keeps its status
            assert signal_attributes(span) == {}
            assert span["status"] != STATUS_ERROR

    loop_root = next(s for s in users if s["trace_id"] == uuid.UUID(loop_id).hex and not s["parent"])
    assert loop_root["name"] == "invoke_agent otel-loop-agent"
    assert signal_attributes(loop_root) == {
        "dunetrace.signal.0.failure_type": "TOOL_LOOP",
        "dunetrace.signal.0.severity": "HIGH",
        "dunetrace.signal.0.confidence": pytest.approx(loop_root["attributes"]["dunetrace.signal.0.confidence"]),
    }
    assert 0 < loop_root["attributes"]["dunetrace.signal.0.confidence"] <= 1
    assert loop_root["status"] == STATUS_ERROR  # HIGH
    healthy_root = next(s for s in users if s["trace_id"] == uuid.UUID(healthy_id).hex and not s["parent"])
    assert signal_attributes(healthy_root) == {}
    assert healthy_root["status"] != STATUS_ERROR

    # the sidecar received both copies and counts each run once, completed (the copy's ERROR is
    # "a signal was found", not "the run failed")
    api = Api(oursdk_daemon)
    loop = settled(oursdk_daemon, loop_id)
    assert (loop["agent_id"], loop["status"], loop["exit_reason"]) == ("otel-loop-agent", "completed", "final_answer")
    assert (loop["llm_calls"], loop["tool_calls"], loop["errors"]) == (5, 4, 0)
    assert signal_types(api.signals(loop_id)) == {"TOOL_LOOP"}
    healthy = settled(oursdk_daemon, healthy_id)
    assert (healthy["status"], healthy["llm_calls"], healthy["tool_calls"]) == ("completed", 2, 1)
    assert signal_types(api.signals(healthy_id)) == set()


# --- the docs' "OpenLLMetry / OTel receiver" block: an existing provider's spans become runs --------


@pytest.fixture
def receiver_daemon(make_sidecar: Callable[..., Sidecar]) -> Sidecar:
    daemon = make_sidecar(env={"DUNETRACE_API_KEYS": API_KEY}, name="oursdk-otel-receiver")
    daemon.api_key = API_KEY
    return daemon


def test_docs_openllmetry_block_makes_runs_of_the_agent(oursdk_stacks_python: Path, receiver_daemon: Sidecar) -> None:
    daemon = receiver_daemon
    marker = f"zq{uuid.uuid4().hex}"
    needles = [marker, marker[2:18], marker[-16:]]
    loop = [Reply.tool_call("search", {"q": "A123"}) for _ in range(4)] + [Reply.answer("Not found.")]
    stopped_turns = [Reply.tool_call("search", {"q": "B456"}) for _ in range(3)]  # a 4th call must not happen
    wire = Wire(daemon)
    try:
        with FakeOpenAI(loop + stopped_turns) as fake:
            env = {
                **wire.env(),
                "OPENAI_BASE_URL": fake.base_url,
                "OPENAI_API_KEY": "sk-test",
                "OTEL_MARKER": marker,
                # OpenLLMetry's own exporter: straight to the daemon (the user's content, not ours)
                "TRACELOOP_BASE_URL": daemon.http_url,
                "TRACELOOP_TELEMETRY": "false",
                "TRACELOOP_METRICS_ENABLED": "false",
                "TRACELOOP_LOGGING_ENABLED": "false",
            }
            out = run_script(oursdk_stacks_python, "otel_receiver", daemon, extra_env=env)
            assert fake.errors == []
            assert fake.remaining == 0
            requests = len(fake.requests)
        ours = spans_of(wire.ours())
        users = spans_of(wire.grpc.requests())
        sent = b"".join(wire.http.bodies)
    finally:
        wire.close()
    assert requests == 8  # 5 calls in the loop, 3 before the stop

    looped, stopped = out.result["looped"], out.result["stopped"]
    assert (looped["answer"], looped["stopped"]) == ("Not found.", None)
    # the stop fired at the 3rd tool call and was raised as the 4th LLM call started, before it ran
    assert stopped["answer"] is None
    assert stopped["stopped"] == {"policy": "cap tool calls", "llm_calls_made": 3}

    api = Api(daemon)
    # one run per trace, its id the trace's: agent my-agent, each LLM and tool call once although
    # the sidecar received OpenLLMetry's spans (twice: Traceloop's exporter and the provider's) and ours
    run = settled(daemon, looped["run_id"])
    assert (run["agent_id"], run["status"], run["exit_reason"]) == ("my-agent", "completed", "final_answer")
    assert (run["llm_calls"], run["tool_calls"], run["errors"]) == (5, 4, 0)
    assert signal_types(api.signals(looped["run_id"])) == {"TOOL_LOOP"}
    halted = settled(daemon, stopped["run_id"])
    assert (halted["agent_id"], halted["exit_reason"]) == ("my-agent", "policy_violation")
    assert (halted["llm_calls"], halted["tool_calls"]) == (3, 3)
    policy_events = [e for e in halted["events"] if e["event_type"] == "policy.triggered"]
    assert [
        (e["payload"]["policy_name"], e["payload"]["action_type"], e["payload"]["source"]) for e in policy_events
    ] == [("cap tool calls", "stop", "sdk")]
    agents = {a["agent_id"] for a in api.json("/v1/runs?limit=50")["runs"]}
    assert agents == {"my-agent"}  # no second run of the same traces under another name

    # our spans: the trace's id, each step the id of the OpenLLMetry span it was built from
    for run_id, llm, tools in ((looped["run_id"], 5, 4), (stopped["run_id"], 3, 3)):
        trace_id = uuid.UUID(run_id).hex
        mine = [s for s in ours if s["trace_id"] == trace_id]
        source = {s["span_id"]: s for s in users if s["trace_id"] == trace_id and s["scope"] != "dunetrace"}
        steps = [s for s in mine if s["parent"]]
        assert sorted(s["name"] for s in steps) == sorted(["chat gpt-4o-mini"] * llm + ["execute_tool search"] * tools)
        assert {source[s["span_id"]]["name"] for s in steps} == {"openai.chat", "search.tool"}
        roots = [s for s in mine if not s["parent"]]
        assert [(r["name"], r["span_id"] in source) for r in roots] == [("invoke_agent my-agent", False)]
    # the user's provider got our run's root (a new span: the agent and its signals), not our steps
    copied = [s for s in users if s["scope"] == "dunetrace"]
    assert sorted((s["trace_id"], s["name"]) for s in copied) == sorted(
        (uuid.UUID(r).hex, "invoke_agent my-agent") for r in (looped["run_id"], stopped["run_id"])
    )
    looped_copy = next(s for s in copied if s["trace_id"] == uuid.UUID(looped["run_id"]).hex)
    assert looped_copy["attributes"]["dunetrace.signal.0.failure_type"] == "TOOL_LOOP"
    assert looped_copy["status"] == STATUS_ERROR

    # content: the marker was in every prompt and tool result; none of it is in what we sent
    assert any(marker.encode() in body for body in wire.grpc.bodies)  # OpenLLMetry's own spans carry it
    assert uuid.UUID(looped["run_id"]).bytes in sent
    assert [n for n in needles if n.encode() in sent] == []
    assert [n for n in needles if any(n in str(s) for s in copied)] == []
    answers = b"".join(api.get(path).body for path in ("/v1/runs?limit=50", f"/v1/runs/{looped['run_id']}"))
    assert [n for n in needles if n.encode() in answers] == []
    daemon.stop()
    with duckdb.connect(str(daemon.db_path), read_only=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        dump = "\n".join(str(conn.execute(f'SELECT * FROM "{table}"').fetchall()) for table in tables)
    assert looped["run_id"] in dump or uuid.UUID(looped["run_id"]).hex in dump
    assert [n for n in needles if n in dump] == []
    raw = daemon.db_path.read_bytes()
    wal = daemon.db_path.with_name(daemon.db_path.name + ".wal")
    raw += wal.read_bytes() if wal.exists() else b""
    assert [n for n in needles if n.encode() in raw] == []
