"""A refused OTLP request costs the log one line and the client no exception text.

Each refusal, on either transport, is one line naming the listener, the reason code and the
peer, with the exception's class name and nothing of the payload; a traceback only at debug.
What the client reads is our sentence, never protobuf's, Python's json's or grpc's.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator

import grpc
import pytest
from google.rpc import status_pb2

from tests.sidecar import HttpResult, Sidecar, wait_for

MARKER = "payload-marker-7f3a9c"  # content of a refused body: must reach neither the log nor the answer
# Valid JSON, not a valid OTLP/JSON request: protobuf's own error would quote the value.
JSON_NOT_OTLP = json.dumps(
    {"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": {"intValue": MARKER}}]}}]}
).encode()
PROTOBUF_GARBAGE = b"\xff\xff\xff" + MARKER.encode()
TRACE_EXPORT = "opentelemetry.proto.collector.trace.v1.TraceService/Export"
# What the exception texts of the libraries would put in the answer or the log.
LIBRARY_TEXT = ("Error parsing", "Wire format", "Expecting", "Failed to parse", "Couldn't parse", "Traceback")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    sidecar = Sidecar(tmp_path_factory.mktemp("refusal-logs")).start()
    # The startup's background read logs a line after "ready": let it land before lines are counted.
    wait_for(lambda: "stored run ids read" in sidecar.log_text(), what="the stored run ids read")
    yield sidecar
    sidecar.close()


def new_lines(sidecar: Sidecar, action: Callable[[], object], expect: str) -> list[str]:
    """Log lines the action added, once a line matching ``expect`` is among them."""
    before = len(sidecar.log_text())
    action()

    def added() -> list[str]:
        lines = sidecar.log_text()[before:].splitlines()
        return lines if any(re.search(expect, line) for line in lines) else []

    return wait_for(added, timeout=5, what=f"a log line matching {expect!r}")


def status_message(result: HttpResult) -> str:
    if result.headers.get("Content-Type", "").startswith("application/json"):
        return str(result.json()["message"])
    return status_pb2.Status.FromString(result.body).message


def assert_no_library_text(text: str) -> None:
    assert MARKER not in text
    for fragment in LIBRARY_TEXT:
        assert fragment not in text, fragment


def metric(sidecar: Sidecar, labels: str) -> float:
    text = sidecar.api("/metrics").body.decode()
    found = re.search(rf"^dunetrace_export_requests_total\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_bad_protobuf_over_http_is_one_warning_and_a_fixed_message(daemon: Sidecar) -> None:
    labels = 'outcome="bad_data",signal="traces",transport="http"'
    counted = metric(daemon, labels)
    results: list[HttpResult] = []
    lines = new_lines(daemon, lambda: results.append(daemon.post_otlp(PROTOBUF_GARBAGE)), "refused otlp_http")
    [result] = results
    assert result.status == 400
    assert status_message(result) == "the body is not a valid ExportTraceServiceRequest (OTLP protobuf)"
    assert len(lines) == 1, lines
    assert re.fullmatch(
        r"\S+ \S+ WARNING dunetrace\.receiver refused otlp_http /v1/traces reason=bad_data "
        r"peer=127\.0\.0\.1:\d+ cause=DecodeError",
        lines[0],
    ), lines[0]
    assert_no_library_text("\n".join(lines))
    assert metric(daemon, labels) == counted + 1
    assert daemon.api("/healthz").status == 200


def test_bad_json_over_http_quotes_nothing_of_the_body(daemon: Sidecar) -> None:
    for body in (JSON_NOT_OTLP, b"{not json " + MARKER.encode()):
        results: list[HttpResult] = []
        lines = new_lines(
            daemon,
            lambda body=body, results=results: results.append(daemon.post_otlp(body, content_type="application/json")),
            "refused otlp_http",
        )
        [result] = results
        assert result.status == 400
        assert status_message(result) == "the body is not a valid OTLP/JSON ExportTraceServiceRequest"
        assert len(lines) == 1, lines
        assert "reason=bad_data" in lines[0] and lines[0].endswith("cause=JsonDecodeError")
        assert_no_library_text("\n".join(lines))


def test_bad_protobuf_over_grpc_is_one_warning_and_a_fixed_status(daemon: Sidecar) -> None:
    labels = 'outcome="bad_data",signal="traces",transport="grpc"'
    counted = metric(daemon, labels)
    errors: list[grpc.RpcError] = []

    def export() -> None:
        with pytest.raises(grpc.RpcError) as raised:
            daemon.grpc_export(PROTOBUF_GARBAGE)
        errors.append(raised.value)

    lines = new_lines(daemon, export, "refused otlp_grpc")
    [error] = errors
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "the message is not a valid ExportTraceServiceRequest"
    assert len(lines) == 1, lines
    assert re.fullmatch(
        rf"\S+ \S+ WARNING dunetrace\.receiver refused otlp_grpc {re.escape(TRACE_EXPORT)} reason=bad_data "
        r"peer=127\.0\.0\.1:\d+ cause=DecodeError",
        lines[0],
    ), lines[0]
    assert_no_library_text("\n".join(lines))
    assert metric(daemon, labels) == counted + 1


def test_what_is_not_http_is_one_line_without_a_traceback(daemon: Sidecar) -> None:
    """aiohttp refuses these itself (a header over 8 KiB here); it used to log a traceback."""
    labels = 'outcome="bad_http",signal="unknown",transport="http"'
    counted = metric(daemon, labels)
    host, port = daemon.addresses["otlp_http"].rsplit(":", 1)
    request = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nX-Long: " + MARKER.encode() * 1000 + b"\r\n\r\n"
    answers: list[bytes] = []

    def send() -> None:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(request)
            answers.append(sock.recv(100))

    lines = new_lines(daemon, send, "refused otlp_http")
    assert answers[0].startswith(b"HTTP/1.0 400")
    assert len(lines) == 1, lines
    assert re.fullmatch(
        r"\S+ \S+ WARNING dunetrace\.receiver refused otlp_http - reason=bad_http peer=127\.0\.0\.1 cause=LineTooLong",
        lines[0],
    ), lines[0]
    assert_no_library_text("\n".join(lines))
    assert metric(daemon, labels) == counted + 1
    assert daemon.api("/healthz").status == 200


def test_busy_refusal_is_one_info_line(make_sidecar: Callable[..., Sidecar]) -> None:
    daemon = make_sidecar(env={"DUNETRACE_MAX_INFLIGHT_BYTES": "1"}, name="busy")
    # The first request is admitted whatever its size (nothing in flight); hold it open by
    # sending its headers only, then a second one finds the bytes taken.
    host, port = daemon.addresses["otlp_http"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as held:
        held.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        results: list[HttpResult] = []

        def busy() -> None:
            def refused() -> bool:
                result = daemon.post_otlp(b"")
                results.append(result)
                return result.status == 503

            wait_for(refused, timeout=5, what="a busy refusal")

        lines = new_lines(daemon, busy, "reason=busy")
    assert results[-1].status == 503 and status_message(results[-1]) == "the sidecar is busy; retry after the delay"
    busy_lines = [line for line in lines if "reason=busy" in line]
    assert len(busy_lines) == 1, lines
    assert " INFO dunetrace.receiver refused otlp_http /v1/traces reason=busy peer=127.0.0.1:" in busy_lines[0]
    assert "cause=" not in busy_lines[0]


def test_at_debug_level_the_line_carries_the_traceback(make_sidecar: Callable[..., Sidecar]) -> None:
    daemon = make_sidecar(env={"DUNETRACE_LOG_LEVEL": "debug"}, name="debug")
    lines = new_lines(daemon, lambda: daemon.post_otlp(PROTOBUF_GARBAGE), "refused otlp_http")
    text = "\n".join(lines)
    assert "WARNING dunetrace.receiver refused otlp_http /v1/traces reason=bad_data" in text
    assert "Traceback (most recent call last)" in text and "google.protobuf.message.DecodeError" in text
    assert status_message(daemon.post_otlp(PROTOBUF_GARBAGE)) == (
        "the body is not a valid ExportTraceServiceRequest (OTLP protobuf)"
    )
    # Even at debug level, nothing of a refused body reaches the log (protobuf's JSON parser
    # quotes the value it could not read; the exception's text is not kept).
    for body in (JSON_NOT_OTLP, PROTOBUF_GARBAGE):
        content_type = "application/json" if body is JSON_NOT_OTLP else "application/x-protobuf"
        assert daemon.post_otlp(body, content_type=content_type).status == 400
    wait_for(lambda: daemon.log_text().count("reason=bad_data") >= 4, what="the refusals logged")
    assert MARKER not in daemon.log_text()
