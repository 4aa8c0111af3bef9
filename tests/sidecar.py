"""Test harness: the real daemon as a subprocess, plus plain-HTTP helpers (curl-like).

Every test talks to the daemon over real sockets on 127.0.0.1. Ports are chosen by the
daemon (port 0) and read back from its startup log lines.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

ROOT = Path(__file__).resolve().parent.parent
TESTDATA = Path(__file__).resolve().parent / "testdata"
FIXTURES = TESTDATA / "otlp"
T = TypeVar("T")

_LISTEN = re.compile(r"listening (\w+)=(\S+)")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll until ``predicate()`` is truthy; bounded in time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class HttpResult:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None, timeout: float = 30
) -> HttpResult:
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpResult(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return HttpResult(exc.code, dict(exc.headers), exc.read())


class Sidecar:
    """One daemon process with its own data directory and log file."""

    def __init__(
        self,
        workdir: Path,
        env: Mapping[str, str] | None = None,
        config_file: Path | None = None,
        launcher: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_path = workdir / "dunetrace.duckdb"
        self.log_path = workdir / "sidecar.log"
        self.extra_env = dict(env or {})
        self.config_file = config_file
        self.launcher = launcher  # e.g. ("prlimit", "--fsize=…", "--"): run the daemon under it
        self.process: subprocess.Popen[bytes] | None = None
        self.addresses: dict[str, str] = {}
        self._log_offset = 0
        self.api_key: str | None = None  # sent by api() / api_json() / run() when a test sets it

    def start(self, timeout: float = 30.0) -> Sidecar:
        # Nothing from the developer's environment leaks in: the embedded defaults unless a test says so.
        prefixes = ("DUNETRACE_", "OTEL_", "TRACELOOP_", "LANGFUSE_", "ANTHROPIC_", "OPENAI_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
        env.update(
            {
                "DUNETRACE_OTLP_GRPC_ENDPOINT": "127.0.0.1:0",
                "DUNETRACE_OTLP_HTTP_ENDPOINT": "127.0.0.1:0",
                "DUNETRACE_API_ENDPOINT": "127.0.0.1:0",
                "DUNETRACE_DB_PATH": str(self.db_path),
                "DUNETRACE_LOG_LEVEL": "info",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        args = [*self.launcher, sys.executable, "-m", "dunetrace_sidecar"]
        if self.config_file is not None:
            args += ["--config", str(self.config_file)]
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(args, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def ready() -> bool:
            text = self.log_text(since_start=True)
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"sidecar exited with {self.process.returncode}:\n{text}")
            return " ready" in text

        wait_for(ready, timeout=timeout, what="the sidecar to be ready")
        self.addresses = dict(_LISTEN.findall(self.log_text(since_start=True)))
        return self

    def log_text(self, since_start: bool = False) -> str:
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        return data[self._log_offset :].decode(errors="replace") if since_start else data.decode(errors="replace")

    @property
    def grpc_target(self) -> str:
        return self.addresses["otlp_grpc"]

    @property
    def http_url(self) -> str:
        return f"http://{self.addresses['otlp_http']}"

    @property
    def api_url(self) -> str:
        return f"http://{self.addresses['api']}"

    def stop(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no shutdown path runs
        self.process.wait(timeout=30)
        self.process = None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    # --- clients ----------------------------------------------------------------------

    def api(self, path: str, headers: Mapping[str, str] | None = None) -> HttpResult:
        if headers is None and self.api_key:
            headers = {"Authorization": f"Bearer {self.api_key}"}
        return http("GET", self.api_url + path, headers=headers)

    def api_json(self, path: str) -> Any:
        result = self.api(path)
        assert result.status == 200, (path, result.status, result.body[:500])
        return result.json()

    def post_otlp(
        self,
        body: bytes,
        path: str = "/v1/traces",
        content_type: str = "application/x-protobuf",
        gzip_body: bool = False,
        extra_headers: Mapping[str, str] | None = None,
    ) -> HttpResult:
        headers = {"Content-Type": content_type}
        if gzip_body:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        headers.update(extra_headers or {})
        return http("POST", self.http_url + path, body=body, headers=headers)

    def grpc_export(self, body: bytes, service: str = "opentelemetry.proto.collector.trace.v1.TraceService") -> bytes:
        """Send raw request bytes over gRPC, as an exporter does; returns the raw response."""
        with grpc.insecure_channel(self.grpc_target) as channel:
            call = channel.unary_unary(f"/{service}/Export", request_serializer=None, response_deserializer=None)
            return call(body, timeout=30)

    def run(self, run_id: str) -> Any:
        return self.api_json(f"/v1/runs/{run_id}")

    def judged_run(self, run_id: str, timeout: float = 15.0) -> Any:
        """The run once its end-of-run detectors have been asked (runs.end_grace_seconds after
        its root arrived), or at once while it has not ended."""

        def judged() -> Any:
            run = self.run(run_id)
            return None if run["end_pending"] else run

        return wait_for(judged, timeout=timeout, what=f"run {run_id}'s end judgement")

    def wait_run(self, run_id: str, predicate: Callable[[Any], bool] = lambda r: True, timeout: float = 15.0) -> Any:
        def check() -> Any:
            result = self.api(f"/v1/runs/{run_id}")
            if result.status != 200:
                return None
            body = result.json()
            return body if predicate(body) else None

        return wait_for(check, timeout=timeout, what=f"run {run_id}")


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def trace_ids_in(body: bytes) -> list[str]:
    """Run ids (UUID form) of the traces in a serialized ExportTraceServiceRequest."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(body)
    ids = {span.trace_id for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans}
    return sorted(str(uuid.UUID(bytes=t)) for t in ids)


def new_trace_id() -> bytes:
    return uuid.uuid4().bytes


def event_kinds(run: Mapping[str, Any]) -> list[str]:
    return [e["event_type"] for e in run["events"]]


def with_new_trace_ids(body: bytes, kind: str = "traces") -> tuple[bytes, dict[str, str]]:
    """The same request with fresh trace ids (old run id → new run id), so a fixture can be
    sent again as new runs to a daemon that has already seen it."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    mapping: dict[bytes, bytes] = {}
    if kind == "traces":
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    span.trace_id = mapping.setdefault(span.trace_id, new_trace_id())
        out = request.SerializeToString()
    else:
        logs = ExportLogsServiceRequest.FromString(body)
        for rl in logs.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    record.trace_id = mapping.setdefault(record.trace_id, new_trace_id())
        out = logs.SerializeToString()
    return out, {str(uuid.UUID(bytes=k)): str(uuid.UUID(bytes=v)) for k, v in mapping.items()}


def to_any(raw: Any) -> Any:
    """An OTLP ``AnyValue`` holding ``raw`` (bool, int, float, bytes, list, dict or str)."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    value = AnyValue()
    if isinstance(raw, bool):
        value.bool_value = raw
    elif isinstance(raw, int):
        value.int_value = raw
    elif isinstance(raw, float):
        value.double_value = raw
    elif isinstance(raw, bytes):
        value.bytes_value = raw
    elif isinstance(raw, list):
        value.array_value.values.extend(to_any(v) for v in raw)
    elif isinstance(raw, dict):
        value.kvlist_value.values.extend(KeyValue(key=k, value=to_any(v)) for k, v in raw.items())
    else:
        value.string_value = raw
    return value
