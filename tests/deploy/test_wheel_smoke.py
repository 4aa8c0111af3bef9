"""What the image installs, built and run without Docker: the wheel built from exactly the build
context `.dockerignore` lets through (with the Dockerfile's `pip wheel --no-deps` command),
installed into a fresh virtualenv, started with the baked config.

The baked config listens on 0.0.0.0; here the listeners are moved to 127.0.0.1:0 and the store to a
temporary directory through their environment variables (DUNETRACE_OTLP_GRPC_ENDPOINT, ...), the
same variables an operator would use, so all traffic stays on loopback.

Time: building the wheel takes ~4 s; installing it with its dependencies from PyPI through pip's
cache into the fresh virtualenv took ~26 s when measured (well under a minute, but the slowest part
of tests/deploy). The fixture is module-scoped: it happens once.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.deploy.buildcontext import BAKED_CONFIG, ROOT, context_files, copy_context, healthcheck, parse_dockerfile
from tests.deploy.chart import clean_environment
from tests.sidecar import FIXTURES, http, trace_ids_in, wait_for, with_new_trace_ids

PACKAGES = [
    "detectors",
    "detectors/library",
    "dunetrace_sidecar",
    "dunetrace_sidecar/_pb",
    "explain",
    "receiver",
    "store",
]
LISTEN = re.compile(r"listening (\w+)=(\S+)")


@dataclass(frozen=True)
class Installed:
    context_files: tuple[str, ...]
    wheel: Path
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"


def run(args: list[str], cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, cwd=cwd, env=clean_environment(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("image")
    context = base / "context"
    files = copy_context(context)
    wheels = base / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), "."], cwd=context)
    [wheel] = wheels.glob("dunetrace_sidecar-*.whl")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", str(wheel)], cwd=base)
    return Installed(tuple(files), wheel, venv)


def packages_in(files: list[str]) -> list[str]:
    return sorted(f.rsplit("/", 1)[0] for f in files if f.endswith("/__init__.py"))


def test_build_context_holds_every_package_of_the_sources() -> None:
    assert packages_in(context_files()) == PACKAGES
    assert sorted(p.parent.name for p in (ROOT / "detectors").glob("*/__init__.py")) == ["library"]


def test_wheel_holds_every_package_of_the_sources(installed: Installed) -> None:
    assert packages_in(list(installed.context_files)) == PACKAGES
    in_wheel = packages_in(zipfile.ZipFile(installed.wheel).namelist())
    assert in_wheel == PACKAGES, (
        f"packages missing from the wheel: {sorted(set(PACKAGES) - set(in_wheel))} "
        "(pyproject.toml's [tool.setuptools] packages names every package, subpackages included)"
    )
    # The decisions service's messages are generated from proto/ while building, never shipped as source.
    generated = "dunetrace_sidecar/_pb/decisions_pb2.py"
    assert (
        generated not in installed.context_files
        and "proto/dunetrace/sidecar/v1/decisions.proto" in installed.context_files
    )
    assert generated in zipfile.ZipFile(installed.wheel).namelist()


def test_installed_package_is_the_wheel_not_the_sources(installed: Installed, tmp_path: Path) -> None:
    result = run(
        [str(installed.bin / "python"), "-c", "import dunetrace_sidecar.cli, detectors; print(detectors.__file__)"],
        cwd=tmp_path,
    )
    assert Path(result.stdout.strip()).is_relative_to(installed.venv / "lib")


def test_installed_cli_validates_the_baked_config(installed: Installed, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(installed.bin / "dunetrace-sidecar"), "validate", "--config", str(BAKED_CONFIG)],
        cwd=tmp_path,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout.strip()) == (0, f"configuration ok: {BAKED_CONFIG}"), result.stderr


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    log: Path
    addresses: dict[str, str]

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def daemon(installed: Installed, tmp_path: Path) -> Iterator[Daemon]:
    """`dunetrace-sidecar --config <baked config>` from the fresh virtualenv (the image's CMD)."""
    log = tmp_path / "daemon.log"
    env = clean_environment(
        {
            "DUNETRACE_OTLP_GRPC_ENDPOINT": "127.0.0.1:0",
            "DUNETRACE_OTLP_HTTP_ENDPOINT": "127.0.0.1:0",
            "DUNETRACE_API_ENDPOINT": "127.0.0.1:0",
            "DUNETRACE_DB_PATH": str(tmp_path / "data" / "dunetrace.duckdb"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(installed.bin / "dunetrace-sidecar"), "--config", str(BAKED_CONFIG)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the daemon exited with {process.returncode}:\n{log.read_text()}")
            return " ready" in log.read_text()

        wait_for(ready, timeout=60, what="the installed daemon to be ready")
        yield Daemon(process, log, dict(LISTEN.findall(log.read_text())))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def run_healthcheck(installed: Installed, api: str) -> int:
    """The Dockerfile's HEALTHCHECK command, with the image's paths replaced by the virtualenv's
    and the baked config's."""
    _, command = healthcheck(parse_dockerfile()[1][-1].last("HEALTHCHECK").value)
    in_image = {"/opt/dunetrace/bin/dunetrace-sidecar": str(installed.bin / "dunetrace-sidecar")}
    in_image["/etc/dunetrace/config.yaml"] = str(BAKED_CONFIG)
    assert command[0] in in_image
    result = subprocess.run(
        [in_image.get(part, part) for part in command],
        env=clean_environment({"DUNETRACE_API_ENDPOINT": api}),
        capture_output=True,
        timeout=30,
    )
    return result.returncode


def test_baked_config_serves_health_and_accepts_otlp(installed: Installed, daemon: Daemon) -> None:
    assert sorted(daemon.addresses) == ["api", "otlp_grpc", "otlp_http"]
    assert all(a.startswith("127.0.0.1:") for a in daemon.addresses.values())
    api = f"http://{daemon.addresses['api']}"
    assert http("GET", f"{api}/healthz").status == 200
    assert http("GET", f"{api}/readyz").status == 200
    page = http("GET", f"{api}/")  # the dashboard's files are in the wheel
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert http("GET", f"{api}/ui/app.js").status == 200
    assert run_healthcheck(installed, daemon.addresses["api"]) == 0

    # OTLP/HTTP: an OpenLLMetry capture of an agent stuck in a tool loop.
    body = (FIXTURES / "openllmetry-openai-toolloop.pb").read_bytes()
    sent = http(
        "POST",
        f"http://{daemon.addresses['otlp_http']}/v1/traces",
        body=body,
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert sent.status == 200
    # OTLP/gRPC: the same agent captured over gRPC, as new runs.
    grpc_body, _ = with_new_trace_ids((FIXTURES / "openllmetry-grpc-openai-toolloop.pb").read_bytes())
    with grpc.insecure_channel(daemon.addresses["otlp_grpc"]) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=None,
        )
        assert export(grpc_body, timeout=30) == b""  # an ExportTraceServiceResponse with no partial success

    for run_id in trace_ids_in(body) + trace_ids_in(grpc_body):

        def signals(run_id: str = run_id) -> list[str]:
            listed = http("GET", f"{api}/v1/signals?run_id={run_id}").json()["signals"]
            return [s["failure_type"] for s in listed]

        assert wait_for(signals, timeout=15, what=f"the signal of run {run_id}") == ["TOOL_LOOP"]
        assert http("GET", f"{api}/v1/runs/{run_id}").json()["status"] == "completed"
    metrics = http("GET", f"{api}/metrics").body.decode()
    assert 'dunetrace_spans_received_total{transport="http"} 10.0' in metrics
    assert 'dunetrace_spans_received_total{transport="grpc"} 10.0' in metrics

    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=30) == 0
    assert "stopped" in daemon.text()
    assert run_healthcheck(installed, daemon.addresses["api"]) == 1  # nothing answers: unhealthy
