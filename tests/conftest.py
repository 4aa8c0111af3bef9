from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.sidecar import Sidecar


@pytest.fixture(scope="session")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """One daemon shared by tests that only add runs of their own (unique trace ids)."""
    daemon = Sidecar(tmp_path_factory.mktemp("shared-sidecar")).start()
    yield daemon
    daemon.close()


@pytest.fixture
def make_sidecar(tmp_path: Path) -> Iterator[Callable[..., Sidecar]]:
    """A fresh daemon per call, for tests that need isolation, restarts or special config."""
    started: list[Sidecar] = []

    def make(env: dict[str, str] | None = None, config_file: Path | None = None, name: str = "sidecar") -> Sidecar:
        daemon = Sidecar(tmp_path / name, env=env, config_file=config_file)
        started.append(daemon)
        return daemon.start()

    yield make
    for daemon in started:
        daemon.close()
