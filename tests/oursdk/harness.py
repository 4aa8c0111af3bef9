"""Running scripts (tests/oursdk/scripts/<name>.py) with our SDK's venv python against a daemon.

The scripts export to the daemon's OTLP/HTTP receiver through the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` and print one JSON result line with the key "scenario"; the
published SDK's harness (tests/sdk/harness.py) gives the environment, the result type and the
API client."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from tests.oursdk.env import SCRIPTS
from tests.sdk.harness import API_KEY, ScenarioRun, scenario_env
from tests.sidecar import Sidecar

SCRIPT_TIMEOUT_S = 60.0


def script_env(daemon: Sidecar | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = scenario_env(daemon.api_url if daemon else "http://127.0.0.1:9", api_key=API_KEY)
    if daemon is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = daemon.http_url
        env["DUNETRACE_DECISIONS_ENDPOINT"] = daemon.grpc_target  # live decisions (with grpcio installed)
    env.update(extra or {})
    return env


def run_script(
    python: Path,
    name: str,
    daemon: Sidecar | None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = SCRIPT_TIMEOUT_S,
    script: Path | None = None,
) -> ScenarioRun:
    path = script or SCRIPTS / f"{name}.py"
    assert path.exists(), path
    started = time.monotonic()
    try:
        done = subprocess.run(
            [str(python), str(path)],
            cwd=str(SCRIPTS),
            env=script_env(daemon, extra_env),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace")
        err = (exc.stderr or b"").decode(errors="replace")
        raise AssertionError(f"script {name} timed out after {timeout}s\n--- stdout\n{out}\n--- stderr\n{err}") from exc
    seconds = time.monotonic() - started
    stdout = done.stdout.decode(errors="replace")
    stderr = done.stderr.decode(errors="replace")
    results = [
        json.loads(line)
        for line in stdout.splitlines()
        if line.startswith('{"scenario"') and json.loads(line).get("scenario") == name
    ]
    if done.returncode != 0 or len(results) != 1:
        raise AssertionError(
            f"script {name} exited {done.returncode} with {len(results)} result lines\n"
            f"--- stdout\n{stdout[-10000:]}\n--- stderr\n{stderr[-10000:]}"
        )
    return ScenarioRun(name, results[0], stdout, stderr, seconds)
