"""Shared by the soak (``bench/soak.py``) and the overload scenario (``bench/overload.py``):
the daemon as a restartable subprocess, realistic gen_ai traces, the exporters that send them
(OTLP/HTTP protobuf, JSON, gzip; raw OTLP/gRPC; the OTel SDK's gRPC exporter), a ledger of
what was acknowledged, and the verifier that checks the DuckDB file against that ledger.

Everything here talks to 127.0.0.1 only. The verifier opens the store read-only after the
daemon has stopped (DuckDB allows one writer process at a time).
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

ROOT = Path(__file__).resolve().parent.parent
TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
_LISTEN = re.compile(r"listening (\w+)=(\S+)")

ROOT_ROLE, LLM_ROLE, TOOL_ROLE = "root", "llm", "tool"
AGENT = "soak-agent"
TOOLS = ("lookup_order", "get_weather", "search_kb", "fetch_report")
WORDS = ("order", "refund", "invoice", "parcel", "carrier", "status", "update", "weather", "report", "policy")

# A raw gRPC channel re-connects within this after the daemon comes back (grpc's default
# reconnect backoff grows to 120 s, which would measure the channel, not the daemon).
GRPC_CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


# --- the daemon --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` in KB, 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Daemon:
    """The sidecar as a subprocess on one DuckDB file that outlives restarts.

    Ports are fixed for the daemon's whole life (chosen once, free on 127.0.0.1), as an
    exporter's endpoint is: clients keep their target across kills and restarts. ``source``
    is the tree the daemon's code is imported from (e.g. a ``git archive`` of one commit, so a
    long run is not disturbed by edits in the working tree)."""

    def __init__(self, workdir: Path, env: Mapping[str, str] | None = None, source: Path = ROOT) -> None:
        self.source = source
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_path = workdir / "soak.duckdb"
        self.log_path = workdir / "sidecar.log"
        self.ports = {"otlp_grpc": free_port(), "otlp_http": free_port(), "api": free_port()}
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _env(self) -> dict[str, str]:
        prefixes = ("DUNETRACE_", "OTEL_", "TRACELOOP_", "LANGFUSE_", "ANTHROPIC_", "OPENAI_", "SLACK_", "WEBHOOK_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
        env.update(
            {
                "DUNETRACE_OTLP_GRPC_ENDPOINT": self.address("otlp_grpc"),
                "DUNETRACE_OTLP_HTTP_ENDPOINT": self.address("otlp_http"),
                "DUNETRACE_API_ENDPOINT": self.address("api"),
                "DUNETRACE_DB_PATH": str(self.db_path),
                "DUNETRACE_LOG_LEVEL": "info",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(self.source),
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 90.0) -> float:
        """Start and wait for the ' ready' log line; returns the seconds it took."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dunetrace_sidecar"],
                cwd=self.workdir,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        while time.monotonic() - started < timeout:
            text = self.log_since(offset)
            if " ready" in text:
                return time.monotonic() - started
            if self.process.poll() is not None:
                raise RuntimeError(f"the daemon exited with {self.process.returncode} while starting:\n{text[-3000:]}")
            time.sleep(0.02)
        raise RuntimeError(f"the daemon was not ready within {timeout:.0f} s:\n{self.log_since(offset)[-3000:]}")

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_bytes()[-chars:].decode(errors="replace") if self.log_path.exists() else ""

    def log_problems(self, limit: int = 10) -> list[str]:
        """Tracebacks (a thread or the process died of an exception) and ERROR lines in the log."""
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text(errors="replace").splitlines()
        out: list[str] = []
        for i, line in enumerate(lines):
            if line.startswith(("Traceback", "Exception in thread")):
                out.append(" | ".join(lines[i : i + 12]))
            elif " ERROR " in line:
                out.append(line)
        return out[:limit]

    def kill(self) -> None:
        """SIGKILL: no shutdown path runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM and wait (the daemon drains and checkpoints); its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            code = -9
        self.process = None
        return code

    def exited(self) -> int | None:
        """The exit code if the process died on its own, else None."""
        return self.process.poll() if self.process is not None else None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None


# --- traces -----------------------------------------------------------------------------

AttrValue = str | int | float | bool | list[str]


@dataclass(frozen=True, slots=True)
class SpanSpec:
    """One span, independent of the wire format it will be sent in."""

    trace_id: bytes
    span_id: bytes
    parent_id: bytes
    name: str
    kind: int  # OTLP SpanKind: 1 internal, 3 client
    start_ns: int
    end_ns: int
    attrs: Mapping[str, AttrValue]
    error: bool
    role: str

    @property
    def run_id(self) -> str:
        return str(uuid.UUID(bytes=self.trace_id))

    @property
    def span_hex(self) -> str:
        return self.span_id.hex()


@dataclass(frozen=True, slots=True)
class Trace:
    """One agent run: a root span, LLM spans asking for tools, tool spans answering them."""

    spans: tuple[SpanSpec, ...]
    loop: bool  # one tool called with identical arguments over and over: TOOL_LOOP fires
    errors: int  # failed tool spans

    @property
    def run_id(self) -> str:
        return self.spans[0].run_id

    def count(self, role: str) -> int:
        return sum(1 for s in self.spans if s.role == role)


def _text(rng: random.Random, size: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < size:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def _llm_attrs(rng: random.Random, step: int, tool: str | None, call_id: str, args: str) -> dict[str, AttrValue]:
    finish = "tool_calls" if tool else "stop"
    parts: list[dict[str, Any]] = [{"type": "text", "content": _text(rng, rng.randint(100, 600))}]
    if tool:
        parts.append({"type": "tool_call", "id": call_id, "name": tool, "arguments": json.loads(args)})
    messages = [
        {"role": "system", "parts": [{"type": "text", "content": "You are a concise support agent."}]},
        {"role": "user", "parts": [{"type": "text", "content": _text(rng, rng.randint(300, 1500))}]},
    ]
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": f"chatcmpl-{uuid.UUID(int=rng.getrandbits(128)).hex}",
        "gen_ai.usage.input_tokens": 200 + step * 80,
        "gen_ai.usage.output_tokens": 35,
        "gen_ai.response.finish_reasons": [finish],
        "gen_ai.input.messages": json.dumps(messages),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": parts, "finish_reason": finish}]),
    }


def build_trace(rng: random.Random, start_ns: int, tool_calls: int, loop: bool, fail_one: bool) -> Trace:
    """A run of ``tool_calls`` (LLM → tool) steps and a final answer; every LLM span asks for
    the tool the next tool span runs (by tool-call id), so the run's counts are exact."""
    trace_id = rng.randbytes(16)
    root_id = rng.randbytes(8)
    spans: list[SpanSpec] = []
    t = start_ns + 1_000_000
    failing = rng.randrange(tool_calls) if fail_one and tool_calls else -1
    for step in range(tool_calls + 1):
        tool = (TOOLS[0] if loop else rng.choice(TOOLS)) if step < tool_calls else None
        call_id = f"call_{rng.getrandbits(64):016x}"
        args = json.dumps({"order": "A-1042"} if loop else {"order": f"A-{rng.randint(1000, 9999)}"})
        end = t + rng.randint(2_000_000, 20_000_000)
        attrs = _llm_attrs(rng, step, tool, call_id, args)
        spans.append(
            SpanSpec(trace_id, rng.randbytes(8), root_id, "chat gpt-4o-mini", 3, t, end, attrs, False, LLM_ROLE)
        )
        t = end + 100_000
        if tool is None:
            break
        end = t + rng.randint(1_000_000, 10_000_000)
        tool_attrs: dict[str, AttrValue] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.call.arguments": args,
            "gen_ai.tool.call.result": _text(rng, rng.randint(100, 800)),
        }
        failed = step == failing
        if failed:
            tool_attrs["error.type"] = "TimeoutError"
        spans.append(
            SpanSpec(
                trace_id, rng.randbytes(8), root_id, f"execute_tool {tool}", 1, t, end, tool_attrs, failed, TOOL_ROLE
            )
        )
        t = end + 100_000
    root_attrs: dict[str, AttrValue] = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT}
    root = SpanSpec(
        trace_id, root_id, b"", f"invoke_agent {AGENT}", 1, start_ns, t + 1_000_000, root_attrs, False, ROOT_ROLE
    )
    return Trace((root, *spans), loop, 1 if failing >= 0 else 0)


def random_trace(rng: random.Random, loop_share: float = 0.2, fail_share: float = 0.1) -> Trace:
    loop = rng.random() < loop_share
    return build_trace(
        rng,
        time.time_ns(),
        rng.randint(3, 5) if loop else rng.randint(1, 4),
        loop,
        rng.random() < fail_share and not loop,
    )


def split(trace: Trace, rng: random.Random, max_parts: int = 3, shuffle_share: float = 0.15) -> list[list[SpanSpec]]:
    """The trace as the SDK's batch processor sends it: in end order (root last), cut into up
    to ``max_parts`` exports; a share of traces arrives out of order (root first)."""
    ordered = sorted(trace.spans, key=lambda s: s.end_ns)
    parts = min(rng.randint(1, max_parts), len(ordered))
    cuts = sorted(rng.sample(range(1, len(ordered)), parts - 1))
    out = [ordered[a:b] for a, b in zip([0, *cuts], [*cuts, len(ordered)], strict=True)]
    if rng.random() < shuffle_share:
        rng.shuffle(out)
    return out


# --- encodings -------------------------------------------------------------------------


def _any(value: AttrValue) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(AnyValue(string_value=v) for v in value)
        return out
    return AnyValue(string_value=value)


def _proto_span(spec: SpanSpec) -> Span:
    return Span(
        trace_id=spec.trace_id,
        span_id=spec.span_id,
        parent_span_id=spec.parent_id,
        name=spec.name,
        kind=spec.kind,  # type: ignore[arg-type]  # protobuf's enum stub wants its ValueType
        start_time_unix_nano=spec.start_ns,
        end_time_unix_nano=spec.end_ns,
        attributes=[KeyValue(key=k, value=_any(v)) for k, v in spec.attrs.items()],
        status=Status(code=Status.STATUS_CODE_ERROR if spec.error else Status.STATUS_CODE_UNSET),
    )


def export_request(spans: Sequence[SpanSpec], service: str = "soak-service") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    rs.resource.attributes.append(KeyValue(key="gen_ai.agent.name", value=AnyValue(string_value=AGENT)))
    ss = rs.scope_spans.add()
    ss.scope.name = "bench.soak"
    ss.spans.extend(_proto_span(s) for s in spans)
    return request


def to_otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON: camelCase fields, enums as integers, trace and span ids as hex (not base64)."""
    data = json_format.MessageToDict(request, use_integers_for_enums=True)
    for rs in data.get("resourceSpans", ()):
        for ss in rs.get("scopeSpans", ()):
            for span in ss.get("spans", ()):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(data).encode()


# --- exporters ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """One export attempt: acknowledged, or refused for ``reason`` (retry after ``delay`` s
    when the daemon asked for one). ``ambiguous``: the answer was lost, the export may or may
    not be stored (the connection broke while it was in flight)."""

    acked: bool
    reason: str = ""
    delay: float | None = None
    ambiguous: bool = False


ACKED = Outcome(True)


class Exporter(ABC):
    name = "exporter"

    @abstractmethod
    def send(self, spans: Sequence[SpanSpec]) -> Outcome:
        """One export of these spans, as this transport makes it."""

    def close(self) -> None:  # most exporters hold nothing to close
        return None


class HttpExporter(Exporter):
    """OTLP/HTTP on a keep-alive connection, re-opened after any failure."""

    def __init__(self, address: str, encoding: str, timeout: float = 30.0) -> None:
        assert encoding in ("protobuf", "json", "gzip")
        self.name = f"http-{encoding}"
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.encoding = encoding
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def encode(self, request: ExportTraceServiceRequest) -> tuple[bytes, dict[str, str]]:
        if self.encoding == "json":
            return to_otlp_json(request), {"Content-Type": "application/json"}
        body = request.SerializeToString()
        if self.encoding == "gzip":
            return gzip.compress(body), {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
        return body, {"Content-Type": "application/x-protobuf"}

    def send(self, spans: Sequence[SpanSpec]) -> Outcome:
        body, headers = self.encode(export_request(spans))
        return self.post(body, headers)

    def post(self, body: bytes, headers: Mapping[str, str]) -> Outcome:
        sent = False
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.conn.request("POST", "/v1/traces", body=body, headers=dict(headers))
            sent = True
            response = self.conn.getresponse()
            answer = response.read()
        except TimeoutError:
            self.close()
            return Outcome(False, "timeout", ambiguous=sent)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            refused = isinstance(exc, ConnectionRefusedError)
            return Outcome(False, "connection refused" if refused else "connection error", ambiguous=sent)
        if response.status == 200:
            return ACKED
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        retry_after = response.getheader("Retry-After")
        delay = float(retry_after) if retry_after and retry_after.isdigit() else None
        return Outcome(False, f"http {response.status}{_why(_status_message(answer))}", delay)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class GrpcExporter(Exporter):
    """Raw OTLP/gRPC unary calls on one channel, as the SDK's exporter makes them."""

    name = "grpc"

    def __init__(self, target: str, timeout: float = 30.0) -> None:
        self.channel = grpc.insecure_channel(target, options=list(GRPC_CHANNEL_OPTIONS))
        self.call = self.channel.unary_unary(TRACE_EXPORT, request_serializer=None, response_deserializer=None)
        self.timeout = timeout

    def send(self, spans: Sequence[SpanSpec]) -> Outcome:
        return self.send_bytes(export_request(spans).SerializeToString())

    def send_bytes(self, body: bytes) -> Outcome:
        try:
            self.call(body, timeout=self.timeout)
        except grpc.RpcError as exc:
            return grpc_refusal(exc)
        return ACKED

    def close(self) -> None:
        self.channel.close()


def _status_message(body: bytes) -> str:
    """The message of a refusal's ``google.rpc.Status`` body (protobuf or JSON), if any."""
    try:
        return str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        pass
    try:
        return str(status_pb2.Status.FromString(body).message)
    except Exception:  # not a Status at all (e.g. the connection cap's plain answer)
        return ""


def _why(message: str) -> str:
    """Which of the daemon's retryable refusals this was, from its message."""
    text = message.lower()
    for word, tag in (("busy", "busy"), ("store", "store unavailable"), ("shutting", "shutting down")):
        if word in text:
            return f" ({tag})"
    return f" ({message[:60]})" if message else ""


def grpc_refusal(exc: grpc.RpcError) -> Outcome:
    """The reason and asked delay of a failed call. UNAVAILABLE with RetryInfo is the daemon's
    backpressure; without it, no connection (the daemon is down or restarting)."""
    code: grpc.StatusCode = exc.code()
    trailers = dict(exc.trailing_metadata() or ())
    delay = None
    if RETRY_INFO_KEY in trailers:
        info = error_details_pb2.RetryInfo.FromString(trailers[RETRY_INFO_KEY])
        delay = info.retry_delay.ToNanoseconds() / 1e9
    if code == grpc.StatusCode.UNAVAILABLE and delay is None:
        return Outcome(False, "grpc UNAVAILABLE (no connection)", ambiguous=True)
    ambiguous = code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN)
    suffix = _why(str(exc.details() or "")) if delay is not None else " (no RetryInfo)"
    return Outcome(False, f"grpc {code.name}{suffix}", delay, ambiguous)


class SdkGrpcExporter(Exporter):
    """The OTel SDK's own OTLP/gRPC exporter: it retries UNAVAILABLE itself (honouring
    RetryInfo) within its timeout and answers SUCCESS or FAILURE."""

    name = "sdk-grpc"

    def __init__(self, target: str, timeout: float = 10.0) -> None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        self.exporter = OTLPSpanExporter(endpoint=target, insecure=True, timeout=timeout)

    def send(self, spans: Sequence[SpanSpec]) -> Outcome:
        from opentelemetry.sdk.trace.export import SpanExportResult

        result = self.exporter.export([readable_span(s) for s in spans])
        return ACKED if result == SpanExportResult.SUCCESS else Outcome(False, "sdk FAILURE", ambiguous=True)

    def close(self) -> None:
        self.exporter.shutdown()


def readable_span(spec: SpanSpec) -> Any:
    """The SDK's ``ReadableSpan`` for ``spec`` (what its batch processor hands the exporter)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
    from opentelemetry.trace.status import Status as SdkStatus
    from opentelemetry.trace.status import StatusCode

    def context(span_id: bytes) -> SpanContext:
        return SpanContext(
            int.from_bytes(spec.trace_id), int.from_bytes(span_id), is_remote=False, trace_flags=TraceFlags(1)
        )

    return ReadableSpan(
        name=spec.name,
        context=context(spec.span_id),
        parent=context(spec.parent_id) if spec.parent_id else None,
        resource=Resource.create({"service.name": "soak-service", "gen_ai.agent.name": AGENT}),
        attributes=dict(spec.attrs),
        kind={1: SpanKind.INTERNAL, 3: SpanKind.CLIENT}[spec.kind],
        status=SdkStatus(StatusCode.ERROR if spec.error else StatusCode.UNSET),
        start_time=spec.start_ns,
        end_time=spec.end_ns,
    )


def make_exporter(kind: str, daemon: Daemon) -> Exporter:
    if kind in ("http-protobuf", "http-json", "http-gzip"):
        return HttpExporter(daemon.address("otlp_http"), kind.split("-", 1)[1])
    if kind == "grpc":
        return GrpcExporter(daemon.address("otlp_grpc"))
    if kind == "sdk-grpc":
        return SdkGrpcExporter(daemon.address("otlp_grpc"))
    raise ValueError(f"unknown exporter kind {kind!r}")


def backoff(attempt: int, asked: float | None, rng: random.Random, cap: float = 5.0) -> float:
    """How long a real exporter waits before retrying: the delay the daemon asked for, else
    exponential from 0.1 s, with jitter."""
    if asked is not None:
        return min(asked, cap * 2)
    return min(cap, 0.1 * 2**attempt) * rng.uniform(0.5, 1.0)


# --- the ledger --------------------------------------------------------------------------

SpanKey = tuple[str, str]  # (run id, span id hex)


@dataclass
class Ledger:
    """What the clients planned, attempted and got acknowledged (thread-safe)."""

    planned: dict[str, Trace] = field(default_factory=dict)
    attempted: set[SpanKey] = field(default_factory=set)
    acked: dict[SpanKey, str] = field(default_factory=dict)  # → role
    counts: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def plan(self, trace: Trace) -> None:
        with self.lock:
            self.planned[trace.run_id] = trace

    def attempt(self, spans: Sequence[SpanSpec]) -> None:
        with self.lock:
            self.counts["exports sent"] += 1
            self.counts["spans sent"] += len(spans)
            self.attempted.update((s.run_id, s.span_hex) for s in spans)

    def outcome(self, spans: Sequence[SpanSpec], outcome: Outcome, replay: bool = False) -> None:
        with self.lock:
            if outcome.acked:
                self.counts["exports acknowledged"] += 1
                if replay:
                    self.counts["replays acknowledged"] += 1
                for s in spans:
                    self.acked[(s.run_id, s.span_hex)] = s.role
            else:
                self.counts["exports refused"] += 1
                self.refused[outcome.reason] += 1
                if outcome.ambiguous:
                    self.counts["answers lost in flight"] += 1

    def note(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    def snapshot_acked_runs(self) -> list[str]:
        """Runs with an acknowledged LLM or tool span (a stepless trace is never listed)."""
        with self.lock:
            return sorted({run for (run, _), role in self.acked.items() if role != ROOT_ROLE})


def send_until_acked(
    exporter: Exporter,
    spans: Sequence[SpanSpec],
    ledger: Ledger,
    deadline: float,
    rng: random.Random,
    replay: bool = False,
) -> bool:
    """Send one export, retrying refusals with backoff until acknowledged or ``deadline``."""
    attempt = 0
    while True:
        ledger.attempt(spans)
        outcome = exporter.send(spans)
        ledger.outcome(spans, outcome, replay)
        if outcome.acked:
            return True
        wait = backoff(attempt, outcome.delay, rng)
        if time.monotonic() + wait > deadline:
            ledger.note("exports abandoned")
            return False
        time.sleep(wait)
        attempt += 1


# --- verification ------------------------------------------------------------------------


def expected_event_ids(span_hex: str, role: str) -> tuple[tuple[str, ...], ...]:
    """Event ids an acknowledged span must have left (each inner tuple: one of these)."""
    if role == ROOT_ROLE:
        return ((f"{span_hex}:run.started",), (f"{span_hex}:run.completed", f"{span_hex}:run.errored"))
    if role == LLM_ROLE:
        return ((f"{span_hex}:llm.called",), (f"{span_hex}:llm.responded",))
    return ((f"{span_hex}:tool.responded",),)


@dataclass
class Verification:
    acked_spans: int = 0
    acked_runs: int = 0
    stored_runs: int = 0
    stored_events: int = 0
    complete_runs: int = 0  # every planned span acknowledged
    loop_runs_complete: int = 0
    loop_runs_with_tool_loop: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    miscounted: list[str] = field(default_factory=list)
    missing_signals: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.miscounted or self.missing_signals)

    def summary(self, limit: int = 20) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "acked_spans": self.acked_spans,
            "acked_runs": self.acked_runs,
            "stored_runs": self.stored_runs,
            "stored_events": self.stored_events,
            "complete_runs": self.complete_runs,
            "loop_runs_complete": self.loop_runs_complete,
            "loop_runs_with_tool_loop": self.loop_runs_with_tool_loop,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "miscounted": len(self.miscounted),
            "missing_signals": len(self.missing_signals),
            "examples": (self.lost + self.duplicated + self.miscounted + self.missing_signals)[:limit],
        }


@dataclass(frozen=True, slots=True)
class StoredRun:
    llm_calls: int
    tool_calls: int
    errors: int
    status: str


def _read_store(db_path: Path) -> tuple[Counter[tuple[str, str]], dict[str, StoredRun], set[tuple[str, str]]]:
    """(copies of each (run id, event id), runs, (run id, failure type) of each signal)."""
    conn = duckdb.connect(str(db_path), read_only=True)
    try:
        events: Counter[tuple[str, str]] = Counter()
        for run_id, event_id, n in conn.execute(
            "SELECT run_id::VARCHAR, event_id, count(*) FROM events GROUP BY ALL"
        ).fetchall():
            events[(run_id, event_id)] = n
        runs = {
            r[0]: StoredRun(r[1], r[2], r[3], r[4])
            for r in conn.execute(
                "SELECT run_id::VARCHAR, llm_calls, tool_calls, errors, status FROM runs_now"
            ).fetchall()
        }
        signals = {(r[0], r[1]) for r in conn.execute("SELECT run_id::VARCHAR, failure_type FROM signals").fetchall()}
    finally:
        conn.close()
    return events, runs, signals


def verify(db_path: Path, ledger: Ledger) -> Verification:
    """Check the stopped daemon's store against ``ledger``.

    Lost: an acknowledged span whose events are not all there (or whose run is missing).
    Duplicated: one event id stored twice for a run (the daemon drops spans it has seen, by
    span id, also across restarts), or a run counting more LLM calls, tool calls or errors
    than its trace holds. A run whose every span was acknowledged must count exactly its
    trace's calls and errors, and a complete loop run must carry its TOOL_LOOP signal
    (signals are committed with the events that prove them)."""
    counts, runs, signals = _read_store(db_path)
    out = Verification(acked_spans=len(ledger.acked), stored_runs=len(runs), stored_events=sum(counts.values()))
    acked_runs = {run for run, _ in ledger.acked}
    out.acked_runs = len(acked_runs)
    for (run_id, span_hex), role in sorted(ledger.acked.items()):
        if role != ROOT_ROLE and run_id not in runs:
            out.lost.append(f"run {run_id}: acknowledged {role} span {span_hex}, no run row")
            continue
        for options in expected_event_ids(span_hex, role):
            if not any((run_id, e) in counts for e in options):
                out.lost.append(f"run {run_id}: acknowledged {role} span {span_hex}, no event {' or '.join(options)}")
    for (run_id, event_id), n in sorted(counts.items()):
        if n > 1:
            out.duplicated.append(f"run {run_id}: event {event_id} stored {n} times")
    for run_id, trace in sorted(ledger.planned.items()):
        _check_counts(out, run_id, trace, runs.get(run_id), ledger, signals)
    return out


def _check_counts(
    out: Verification,
    run_id: str,
    trace: Trace,
    stored: StoredRun | None,
    ledger: Ledger,
    signals: set[tuple[str, str]],
) -> None:
    if stored is None:
        return
    want = {"llm_calls": trace.count(LLM_ROLE), "tool_calls": trace.count(TOOL_ROLE), "errors": trace.errors}
    have = {"llm_calls": stored.llm_calls, "tool_calls": stored.tool_calls, "errors": stored.errors}
    complete = all((run_id, s.span_hex) in ledger.acked for s in trace.spans)
    for name, expected in want.items():
        if have[name] > expected or (complete and have[name] != expected):
            out.miscounted.append(f"run {run_id}: {name} {have[name]}, its trace holds {expected}")
    if complete:
        out.complete_runs += 1
        if trace.loop and trace.count(TOOL_ROLE) >= 3:
            out.loop_runs_complete += 1
            if (run_id, "TOOL_LOOP") in signals:
                out.loop_runs_with_tool_loop += 1
            else:
                out.missing_signals.append(f"run {run_id}: {trace.count(TOOL_ROLE)} identical tool calls, no TOOL_LOOP")


# --- small statistics -------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
