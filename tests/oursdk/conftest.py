"""Fixtures for our own SDK's tests (sdk/python):

* ``oursdk_python``: the python of ``.oursdkenv`` (tests/oursdk/env.py), built on first use in the session.
* ``oursdk_stacks_python``: ``.oursdkenv-stacks``, the SDK with the frameworks of stacks.txt.
* ``oursdk_daemon``: one daemon for the session, with the API key the scripts use, for tests that only
  add runs of their own agents.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.oursdk.env import ensure_oursdk_env, ensure_oursdk_stacks_env
from tests.sdk.env import SdkEnvError
from tests.sdk.harness import API_KEY
from tests.sidecar import Sidecar


@pytest.fixture(scope="session")
def oursdk_python() -> Path:
    try:
        env = ensure_oursdk_env()
    except SdkEnvError as exc:
        pytest.fail(f"could not build our SDK's environment (.oursdkenv/):\n{exc}", pytrace=False)
    return env.python


@pytest.fixture(scope="session")
def oursdk_stacks_python() -> Path:
    """Our SDK with the frameworks and clients the docs' examples use (tests/oursdk/stacks.txt)."""
    try:
        env = ensure_oursdk_stacks_env()
    except SdkEnvError as exc:
        pytest.fail(f"could not build our SDK's stacks environment (.oursdkenv-stacks/):\n{exc}", pytrace=False)
    return env.python


@pytest.fixture(scope="session")
def oursdk_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    env = {"DUNETRACE_API_KEYS": API_KEY}
    daemon = Sidecar(tmp_path_factory.mktemp("oursdk-sidecar"), env=env).start()
    daemon.api_key = API_KEY
    yield daemon
    daemon.close()
