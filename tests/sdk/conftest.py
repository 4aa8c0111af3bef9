"""Fixtures for the end-to-end tests through the published Dunetrace SDK (dunetrace==0.5.7).

* ``sdk_python``: the SDK venv's python; the venv (.sdkenv/) is built on first use in the session, or reused while
  tests/sdk/requirements.txt is unchanged. A failed build fails the tests that need it, with pip's output.
* ``sdk_shared_daemon``: one daemon for the session, with that key, for tests that add runs of their own agents.
* ``sdk_daemon``: a daemon of its own per test, started with the API key the SDK uses (DUNETRACE_API_KEYS);
  ``sdk_daemon(env={...})`` adds settings (e.g. DUNETRACE_POLICY_SECRET).
* ``fake_openai``: ``fake_openai([Reply, ...])`` starts the scripted OpenAI server of tests/fakes/llm_servers.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes.llm_servers import FakeOpenAI, Reply
from tests.sdk.env import SdkEnvError, ensure_sdk_env
from tests.sdk.harness import API_KEY
from tests.sidecar import Sidecar


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    try:
        env = ensure_sdk_env()
    except SdkEnvError as exc:
        pytest.fail(f"could not build the SDK environment (.sdkenv/):\n{exc}", pytrace=False)
    return env.python


@pytest.fixture(scope="session")
def sdk_shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """One daemon (with the SDK's API key) for the scenario tests that only add runs of their own agents."""
    env = {"DUNETRACE_API_KEYS": API_KEY, "DUNETRACE_LOG_LEVEL": "debug"}
    daemon = Sidecar(tmp_path_factory.mktemp("sdk-shared-sidecar"), env=env).start()
    yield daemon
    daemon.close()


@pytest.fixture
def sdk_daemon(make_sidecar: Callable[..., Sidecar]) -> Callable[..., Sidecar]:
    def make(env: dict[str, str] | None = None, name: str = "sdk-sidecar") -> Sidecar:
        return make_sidecar(
            env={"DUNETRACE_API_KEYS": API_KEY, "DUNETRACE_LOG_LEVEL": "debug", **(env or {})}, name=name
        )

    return make


@pytest.fixture
def fake_openai() -> Iterator[Callable[[list[Reply]], FakeOpenAI]]:
    started: list[FakeOpenAI] = []

    def make(script: list[Reply]) -> FakeOpenAI:
        server = FakeOpenAI(script)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.close()
