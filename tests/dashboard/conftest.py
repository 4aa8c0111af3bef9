"""Fixtures of the dashboard tests: one headless chromium, the fake Langfuse and explaining LLM
of the explain tests, and one daemon wired to both (as tests/explain/test_explain_loop.py does)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard.browser import Browser, chromium_available, start_chromium
from tests.explain.test_explain_loop import ANTHROPIC_MODEL, LLM_ANSWER, OPENAI_MODEL, anthropic_env, langfuse_env
from tests.fakes.explainer_llm import FakeExplainerLLM
from tests.fakes.langfuse_server import FakeLangfuse
from tests.sidecar import Sidecar


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    if not chromium_available():
        pytest.fail("Debian's chromium and chromium-driver are needed (apt-get install chromium chromium-driver)")
    driver = start_chromium()
    try:
        yield Browser(driver)
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: Browser, tmp_path: Path) -> Iterator[Browser]:
    """The session's chromium with a clean tab state; after the test, no script error or CSP
    violation may have been logged."""
    chromium.driver.get("about:blank")
    chromium.driver.get_log("browser")  # drop what earlier tests left
    yield chromium
    problems = chromium.console_problems()
    chromium.driver.get("about:blank")
    assert problems == [], problems


@pytest.fixture(scope="session")
def dash_langfuse() -> Iterator[FakeLangfuse]:
    server = FakeLangfuse().start()
    yield server
    server.stop()
    assert server.errors == []


@pytest.fixture(scope="session")
def dash_llm() -> Iterator[FakeExplainerLLM]:
    server = FakeExplainerLLM(LLM_ANSWER, anthropic_model=ANTHROPIC_MODEL, openai_model=OPENAI_MODEL).start()
    yield server
    server.stop()
    assert server.errors == []


@pytest.fixture(scope="session")
def dash_daemon(
    tmp_path_factory: pytest.TempPathFactory, dash_langfuse: FakeLangfuse, dash_llm: FakeExplainerLLM
) -> Iterator[Sidecar]:
    """The daemon the dashboard tests share (each adds runs and prompts of its own)."""
    daemon = Sidecar(
        tmp_path_factory.mktemp("dashboard-sidecar"), env={**langfuse_env(dash_langfuse), **anthropic_env(dash_llm)}
    ).start()
    yield daemon
    daemon.close()
