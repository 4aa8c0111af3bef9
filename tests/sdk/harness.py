"""Driving the daemon through the real published SDK: scenario scripts run with the SDK venv's python
(tests/sdk/env.py) as subprocesses, and an authenticated client for the daemon's API.

A scenario script (tests/sdk/scenarios/<name>.py) gets its inputs from environment variables (see
scenarios/_common.py) and prints one JSON line with the key "scenario"; ``run_scenario`` returns it parsed, with
the script's whole stdout/stderr and how long it took, and fails the test with both when the script fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.sdk.env import SCENARIOS
from tests.sidecar import HttpResult, Sidecar, http, wait_for

API_KEY = "sdk-e2e-api-key-0123456789"  # the daemon's DUNETRACE_API_KEYS and the SDK's api_key (16+ chars)
SCENARIO_TIMEOUT_S = 120.0
# What a scenario's process inherits from ours; nothing else (no DUNETRACE_*, OPENAI_*, proxies, LangSmith ...).
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


@dataclass(frozen=True)
class ScenarioRun:
    name: str
    result: dict[str, Any]
    stdout: str
    stderr: str
    seconds: float

    def ndjson(self) -> list[dict[str, Any]]:
        """Every JSON object line of stdout other than the result line (the SDK's emit_as_json lines)."""
        out = []
        for line in self.stdout.splitlines():
            if line.startswith("{"):
                obj = json.loads(line)
                if "scenario" not in obj:
                    out.append(obj)
        return out


def scenario_env(
    endpoint: str,
    *,
    api_key: str = API_KEY,
    api_url: str | None = None,
    fake_openai: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            # LangChain / LangSmith: no tracing, no telemetry; nothing leaves 127.0.0.1.
            "LANGSMITH_TRACING": "false",
            "LANGCHAIN_TRACING_V2": "false",
            "DO_NOT_TRACK": "1",
            "DT_ENDPOINT": endpoint,
            "DT_API_KEY": api_key,
            "DT_API_URL": api_url or endpoint,
        }
    )
    if fake_openai is not None:
        env["FAKE_OPENAI_BASE_URL"] = fake_openai
    env.update(extra or {})
    return env


def run_scenario(
    python: Path,
    name: str,
    endpoint: str,
    *,
    api_key: str = API_KEY,
    api_url: str | None = None,
    fake_openai: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = SCENARIO_TIMEOUT_S,
) -> ScenarioRun:
    script = SCENARIOS / f"{name}.py"
    assert script.exists(), script
    env = scenario_env(endpoint, api_key=api_key, api_url=api_url, fake_openai=fake_openai, extra=extra_env)
    started = time.monotonic()
    try:
        done = subprocess.run(
            [str(python), str(script)],
            cwd=str(SCENARIOS),
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace")
        err = (exc.stderr or b"").decode(errors="replace")
        raise AssertionError(
            f"scenario {name} timed out after {timeout}s\n--- stdout\n{out}\n--- stderr\n{err}"
        ) from exc
    seconds = time.monotonic() - started
    stdout = done.stdout.decode(errors="replace")
    stderr = done.stderr.decode(errors="replace")
    results = []
    for line in stdout.splitlines():
        if line.startswith('{"') and '"scenario"' in line:
            obj = json.loads(line)
            if obj.get("scenario") == name:
                results.append(obj)
    if done.returncode != 0 or len(results) != 1:
        raise AssertionError(
            f"scenario {name} exited {done.returncode} with {len(results)} result lines\n"
            f"--- stdout\n{stdout[-10000:]}\n--- stderr\n{stderr[-10000:]}"
        )
    return ScenarioRun(name, results[0], stdout, stderr, seconds)


class Api:
    """The daemon's API with the Bearer key the SDK uses."""

    def __init__(self, daemon: Sidecar, key: str = API_KEY) -> None:
        self.daemon = daemon
        self.key = key

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def get(self, path: str) -> HttpResult:
        return http("GET", self.daemon.api_url + path, headers=self.headers)

    def json(self, path: str) -> Any:
        result = self.get(path)
        assert result.status == 200, (path, result.status, result.body[:500])
        return result.json()

    def post(self, path: str, body: Any) -> HttpResult:
        headers = {**self.headers, "Content-Type": "application/json"}
        return http("POST", self.daemon.api_url + path, body=json.dumps(body).encode(), headers=headers)

    def run(self, run_id: str) -> Any:
        return self.json(f"/v1/runs/{run_id}")

    def signals(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.json(f"/v1/signals?run_id={run_id}")["signals"])

    def agents(self) -> dict[str, dict[str, Any]]:
        return {a["agent_id"]: a for a in self.json("/v1/agents")["agents"]}

    def wait_run(self, run_id: str, predicate: Callable[[Any], bool] = lambda r: True, timeout: float = 20.0) -> Any:
        """The run once it is stored, ended (not running), judged (no end_pending) and ``predicate`` holds."""

        def check() -> Any:
            result = self.get(f"/v1/runs/{run_id}")
            if result.status != 200:
                return None
            body = result.json()
            if body.get("status") == "running" or body.get("end_pending"):
                return None
            return body if predicate(body) else None

        return wait_for(check, timeout=timeout, what=f"run {run_id} stored and ended")


def event_counts(run: Mapping[str, Any]) -> Counter[str]:
    return Counter(e["event_type"] for e in run["events"])


def signal_types(signals: list[dict[str, Any]]) -> set[str]:
    return {s["failure_type"] for s in signals}
