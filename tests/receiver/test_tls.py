"""TLS and mutual TLS on the three listeners, through real clients over 127.0.0.1: the SDK's OTLP
exporters (gRPC with channel credentials, HTTP with certificate files), plain HTTPS to the API,
raw sockets for what a client should not get away with; certificate files checked at startup
and followed when they are replaced."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

from dunetrace_sidecar.config import ConfigError, load
from tests.otel_sdk import RecordingExporter
from tests.sidecar import ROOT, HttpResult, Sidecar, fixture_bytes, wait_for, with_new_trace_ids
from tests.tls_pki import Pair, Pki, make_pki

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE win over a Session's ``verify``, which
    is where the HTTP exporter puts its ``certificate_file``: with either set (as on CI images)
    the exporter would check the daemon against the system CAs instead of the test CA."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_env(pair: Pair, client_ca: Path | None = None, api: bool = True) -> dict[str, str]:
    env = {"DUNETRACE_OTLP_TLS_CERT_FILE": str(pair.cert), "DUNETRACE_OTLP_TLS_KEY_FILE": str(pair.key)}
    if client_ca is not None:
        env["DUNETRACE_OTLP_TLS_CLIENT_CA_FILE"] = str(client_ca)
    if api:
        env |= {"DUNETRACE_API_TLS_CERT_FILE": str(pair.cert), "DUNETRACE_API_TLS_KEY_FILE": str(pair.key)}
        if client_ca is not None:
            env["DUNETRACE_API_TLS_CLIENT_CA_FILE"] = str(client_ca)
    return env


@pytest.fixture(scope="module")
def tls_daemon(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    daemon = Sidecar(tmp_path_factory.mktemp("tls"), env=tls_env(pki.server)).start()
    yield daemon
    daemon.close()


@pytest.fixture(scope="module")
def mtls_daemon(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    daemon = Sidecar(tmp_path_factory.mktemp("mtls"), env=tls_env(pki.server, client_ca=pki.ca)).start()
    yield daemon
    daemon.close()


def client_context(pki: Pki, client: Pair | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


def https(
    url: str, context: ssl.SSLContext, body: bytes | None = None, headers: dict[str, str] | None = None
) -> HttpResult:
    request = urllib.request.Request(
        url, data=body, method="POST" if body is not None else "GET", headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return HttpResult(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return HttpResult(exc.code, dict(exc.headers), exc.read())


def api(daemon: Sidecar, path: str, context: ssl.SSLContext) -> HttpResult:
    return https(f"https://{daemon.addresses['api']}{path}", context)


def export_one_span(exporter: SpanExporter) -> tuple[list[str], str]:
    recording = RecordingExporter(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": "tls-test"}))
    provider.add_span_processor(SimpleSpanProcessor(recording))
    with provider.get_tracer("tls-test").start_as_current_span("chat") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", "m")
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    return recording.results, trace_id


def grpc_exporter(daemon: Sidecar, pki: Pki, client: Pair | None = None) -> GrpcSpanExporter:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )
    return GrpcSpanExporter(endpoint=daemon.grpc_target, insecure=False, credentials=credentials, timeout=3)


def http_exporter(daemon: Sidecar, pki: Pki, client: Pair | None = None) -> HttpSpanExporter:
    return HttpSpanExporter(
        endpoint=f"https://{daemon.addresses['otlp_http']}/v1/traces",
        certificate_file=str(pki.ca),
        client_certificate_file=str(client.cert) if client else None,
        client_key_file=str(client.key) if client else None,
        timeout=3,
    )


def stored(daemon: Sidecar, pki: Pki, trace_id: str, client: Pair | None = None) -> bool:
    return api(daemon, f"/v1/runs/{trace_id}", client_context(pki, client)).status == 200


def peer_common_name(address: str, pki: Pki, alpn: str | None = None, client: Pair | None = None) -> str:
    host, port = address.rsplit(":", 1)
    context = client_context(pki, client)
    if alpn:
        context.set_alpn_protocols([alpn])
    with (
        socket.create_connection((host, int(port)), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=host) as tls,
    ):
        cert = tls.getpeercert()
    assert cert is not None
    return next(value for rdn in cert["subject"] for key, value in rdn if key == "commonName")


def refused_in_clear(url: str) -> Exception:
    with pytest.raises(Exception) as raised:  # a reset, a closed connection or a bad status line
        urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=10)
    return raised.value


# --- TLS -------------------------------------------------------------------------------------


def test_listeners_announce_tls(tls_daemon: Sidecar) -> None:
    log = tls_daemon.log_text()
    for name in ("otlp_grpc", "otlp_http", "api"):
        assert f"listening {name}={tls_daemon.addresses[name]} tls=on" in log


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_exporters_deliver_over_tls(tls_daemon: Sidecar, pki: Pki, transport: str) -> None:
    exporter = grpc_exporter(tls_daemon, pki) if transport == "grpc" else http_exporter(tls_daemon, pki)
    results, trace_id = export_one_span(exporter)
    assert results == ["SUCCESS"]
    assert stored(tls_daemon, pki, trace_id)


def test_the_api_answers_https(tls_daemon: Sidecar, pki: Pki) -> None:
    context = client_context(pki)
    assert api(tls_daemon, "/healthz", context).status == 200
    assert api(tls_daemon, "/readyz", context).status == 200
    assert api(tls_daemon, "/v1/runs", context).json()["runs"] is not None


def test_plain_text_clients_are_refused_and_the_daemon_keeps_serving(tls_daemon: Sidecar, pki: Pki) -> None:
    body, ids = with_new_trace_ids(fixture_bytes("openllmetry-openai-toolloop.pb"))
    refused_in_clear(f"http://{tls_daemon.addresses['otlp_http']}/v1/traces")
    refused_in_clear(f"http://{tls_daemon.addresses['api']}/healthz")
    with grpc.insecure_channel(tls_daemon.grpc_target) as channel:
        call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as raised:
            call(body, timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    [run_id] = ids.values()
    assert api(tls_daemon, f"/v1/runs/{run_id}", client_context(pki)).status == 404  # nothing got in
    assert api(tls_daemon, "/healthz", client_context(pki)).status == 200
    results, _ = export_one_span(grpc_exporter(tls_daemon, pki))
    assert results == ["SUCCESS"]
    assert "Traceback" not in tls_daemon.log_text()


def test_a_client_that_does_not_trust_the_certificate_gets_nothing(tls_daemon: Sidecar, pki: Pki) -> None:
    untrusting = ssl.create_default_context(cafile=str(pki.stranger_ca))
    with pytest.raises(urllib.error.URLError) as raised:
        api(tls_daemon, "/healthz", untrusting)
    assert isinstance(raised.value.reason, ssl.SSLCertVerificationError)


def tls_1_1_client() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # else the local OpenSSL will not offer TLS 1.1 at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


def handshake(address: str, context: ssl.SSLContext) -> str | None:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock, context.wrap_socket(sock) as tls:
        return tls.version()


def test_tls_1_1_is_refused(tls_daemon: Sidecar, pki: Pki) -> None:
    # The client does speak TLS 1.1: a server that allows it completes the handshake.
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server.minimum_version = ssl.TLSVersion.TLSv1_1
    server.load_cert_chain(str(pki.server.cert), str(pki.server.key))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        accepted = threading.Thread(target=lambda: server.wrap_socket(listener.accept()[0], server_side=True).close())
        accepted.start()
        assert handshake(f"127.0.0.1:{listener.getsockname()[1]}", tls_1_1_client()) == "TLSv1.1"
        accepted.join(timeout=10)
    for name in ("otlp_grpc", "otlp_http", "api"):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            handshake(tls_daemon.addresses[name], tls_1_1_client())
    assert api(tls_daemon, "/healthz", client_context(pki)).status == 200


# --- mutual TLS --------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_mutual_tls_needs_a_client_certificate_the_ca_signed(mtls_daemon: Sidecar, pki: Pki, transport: str) -> None:
    def exporter(client: Pair | None) -> SpanExporter:
        if transport == "grpc":
            return grpc_exporter(mtls_daemon, pki, client)
        return http_exporter(mtls_daemon, pki, client)

    for client in (None, pki.stranger):
        results, trace_id = export_one_span(exporter(client))
        assert results == ["FAILURE"], client
        assert not stored(mtls_daemon, pki, trace_id, pki.client)
    results, trace_id = export_one_span(exporter(pki.client))
    assert results == ["SUCCESS"]
    assert stored(mtls_daemon, pki, trace_id, pki.client)


def test_mutual_tls_on_the_api(mtls_daemon: Sidecar, pki: Pki) -> None:
    assert "listening api=" in mtls_daemon.log_text() and " tls=mutual" in mtls_daemon.log_text()
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        api(mtls_daemon, "/healthz", client_context(pki))
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        api(mtls_daemon, "/healthz", client_context(pki, pki.stranger))
    assert api(mtls_daemon, "/healthz", client_context(pki, pki.client)).status == 200


# --- connections -------------------------------------------------------------------------------


def test_connection_cap_is_answered_over_tls(make_sidecar: Callable[..., Sidecar], pki: Pki) -> None:
    daemon = make_sidecar(env=tls_env(pki.server) | {"DUNETRACE_MAX_CONNECTIONS": "2"}, name="capped")
    host, port = daemon.addresses["otlp_http"].rsplit(":", 1)
    context = client_context(pki)
    held = []
    try:
        for _ in range(2):
            sock = context.wrap_socket(socket.create_connection((host, int(port)), timeout=10), server_hostname=host)
            held.append(sock)
        with (
            socket.create_connection((host, int(port)), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=host) as third,
        ):
            answer = b""
            while chunk := third.recv(4096):
                answer += chunk
    finally:
        for sock in held:
            sock.close()
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer
    assert b"Retry-After: " in answer and answer.endswith(b'"too_many_connections", "message": "retry shortly"}}')
    assert api(daemon, "/healthz", context).status == 200


@pytest.mark.parametrize("listener", ["otlp_http", "otlp_grpc", "api"])
def test_a_handshake_that_never_comes_is_cut_off(make_sidecar: Callable[..., Sidecar], pki: Pki, listener: str) -> None:
    """A connection that never starts its TLS handshake holds a socket no cap counts: it is
    closed after receiver.read_timeout_seconds (asyncio's default is 60 s, grpc's 120 s)."""
    daemon = make_sidecar(env=tls_env(pki.server) | {"DUNETRACE_READ_TIMEOUT": "1"}, name=f"slow-{listener}")
    host, port = daemon.addresses[listener].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the daemon
        elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed


# --- files ---------------------------------------------------------------------------------------


def test_replaced_certificate_files_serve_new_connections(
    make_sidecar: Callable[..., Sidecar], pki: Pki, tmp_path: Path
) -> None:
    """As a renewed kubernetes.io/tls Secret is swapped in: both files at once, atomically."""
    live = tmp_path / "live"
    live.mkdir()
    pair = Pair(live / "tls.crt", live / "tls.key")

    def install(source: Pair) -> None:
        for src, dst in ((source.cert, pair.cert), (source.key, pair.key)):
            tmp = dst.with_suffix(".new")
            tmp.write_bytes(src.read_bytes())
            os.replace(tmp, dst)

    install(pki.server)
    daemon = make_sidecar(env=tls_env(pair), name="rotating")
    listeners = {"api": None, "otlp_http": None, "otlp_grpc": "h2"}
    assert {
        name: peer_common_name(daemon.addresses[name], pki, alpn) for name, alpn in listeners.items()
    } == dict.fromkeys(listeners, "dunetrace-server")

    install(pki.renewed)
    for name, alpn in listeners.items():
        wait_for(
            lambda name=name, alpn=alpn: peer_common_name(daemon.addresses[name], pki, alpn) == "dunetrace-renewed",
            timeout=10,
            what=f"{name} to serve the renewed certificate",
        )
    assert "tls receiver: certificate reloaded" in daemon.log_text()
    assert "tls api: certificate reloaded" in daemon.log_text()
    results, _ = export_one_span(grpc_exporter(daemon, pki))
    assert results == ["SUCCESS"]

    # A half-made change (the server's old key next to the renewed certificate) is not installed.
    pair.key.write_bytes(pki.server.key.read_bytes())
    wait_for(lambda: "the changed files cannot serve (key_file:" in daemon.log_text(), timeout=10, what="the refusal")
    assert peer_common_name(daemon.addresses["api"], pki) == "dunetrace-renewed"
    assert peer_common_name(daemon.addresses["otlp_grpc"], pki, "h2") == "dunetrace-renewed"


def tls_config_error(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as raised:
        load(environ=environ)
    return str(raised.value)


def test_bad_files_are_refused_with_the_key_that_names_them(pki: Pki, tmp_path: Path) -> None:
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(pki.server.key), "-out", str(encrypted), "-aes256", "-passout", "pass:x"],
        check=True,
        capture_output=True,
    )
    unreadable = tmp_path / "unreadable.key"
    unreadable.write_bytes(pki.server.key.read_bytes())
    unreadable.chmod(0)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cert, key = str(pki.server.cert), str(pki.server.key)
    cases = {
        "missing": (
            {"DUNETRACE_OTLP_TLS_CERT_FILE": str(tmp_path / "nope.crt"), "DUNETRACE_OTLP_TLS_KEY_FILE": key},
            f"receiver.tls.cert_file: cannot read {tmp_path / 'nope.crt'}: No such file or directory",
        ),
        "not a certificate": (
            {"DUNETRACE_API_TLS_CERT_FILE": str(garbage), "DUNETRACE_API_TLS_KEY_FILE": key},
            f"api.tls.cert_file: {garbage} holds no PEM certificate",
        ),
        "mismatched": (
            {"DUNETRACE_OTLP_TLS_CERT_FILE": cert, "DUNETRACE_OTLP_TLS_KEY_FILE": str(pki.client.key)},
            f"receiver.tls.key_file: {pki.client.key} is not the key of the certificate in {cert}",
        ),
        "encrypted": (
            {"DUNETRACE_OTLP_TLS_CERT_FILE": cert, "DUNETRACE_OTLP_TLS_KEY_FILE": str(encrypted)},
            f"receiver.tls.key_file: {encrypted} is encrypted",
        ),
        "a key without a certificate": (
            {"DUNETRACE_API_TLS_KEY_FILE": key},
            "api.tls.cert_file: api.tls.cert_file and api.tls.key_file are set together",
        ),
        "a client CA without TLS": (
            {"DUNETRACE_OTLP_TLS_CLIENT_CA_FILE": str(pki.ca)},
            "receiver.tls.client_ca_file: mutual TLS needs TLS",
        ),
        "a client CA that is no CA": (
            {
                "DUNETRACE_OTLP_TLS_CERT_FILE": cert,
                "DUNETRACE_OTLP_TLS_KEY_FILE": key,
                "DUNETRACE_OTLP_TLS_CLIENT_CA_FILE": str(garbage),
            },
            f"receiver.tls.client_ca_file: {garbage} holds no PEM certificate",
        ),
    }
    if os.geteuid() != 0:  # root reads any file
        cases["unreadable"] = (
            {"DUNETRACE_OTLP_TLS_CERT_FILE": cert, "DUNETRACE_OTLP_TLS_KEY_FILE": str(unreadable)},
            f"receiver.tls.key_file: cannot read {unreadable}: Permission denied",
        )
    for name, (environ, message) in cases.items():
        assert tls_config_error(environ).startswith(message), name


def test_the_daemon_refuses_to_start_on_a_mismatched_key(pki: Pki, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUNETRACE_")}
    env |= {
        "DUNETRACE_OTLP_TLS_CERT_FILE": str(pki.server.cert),
        "DUNETRACE_OTLP_TLS_KEY_FILE": str(pki.renewed.key),
        "DUNETRACE_DB_PATH": str(tmp_path / "db.duckdb"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "dunetrace_sidecar"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "invalid configuration: receiver.tls.key_file:" in result.stderr
    assert not (tmp_path / "db.duckdb").exists()  # refused before anything was opened


def test_mutual_tls_stands_in_for_api_keys_beyond_loopback(pki: Pki) -> None:
    exposed = {"DUNETRACE_API_ENDPOINT": "0.0.0.0:8002"}
    served = {"DUNETRACE_API_TLS_CERT_FILE": str(pki.server.cert), "DUNETRACE_API_TLS_KEY_FILE": str(pki.server.key)}
    # TLS alone encrypts; it does not say who may read: keys (or mutual TLS) are still needed.
    assert "which is not loopback, and no api.keys" in tls_config_error(exposed | served)
    config = load(environ=exposed | served | {"DUNETRACE_API_TLS_CLIENT_CA_FILE": str(pki.ca)})
    assert config.api.tls.mutual and not config.api.keys


def run_healthcheck(environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`dunetrace-sidecar healthcheck`, the image's HEALTHCHECK, as a container would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUNETRACE_")} | environ
    return subprocess.run(
        [sys.executable, "-m", "dunetrace_sidecar", "healthcheck"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_container_healthcheck_asks_over_https_when_the_api_serves_it(tls_daemon: Sidecar, pki: Pki) -> None:
    settings = tls_env(pki.server) | {"DUNETRACE_API_ENDPOINT": tls_daemon.addresses["api"]}
    assert run_healthcheck(settings).returncode == 0
    # in clear it would get no answer from a TLS listener
    plain = {k: v for k, v in settings.items() if not k.startswith("DUNETRACE_API_TLS_")}
    failed = run_healthcheck(plain)
    assert failed.returncode == 1
    assert "/healthz" in failed.stderr
