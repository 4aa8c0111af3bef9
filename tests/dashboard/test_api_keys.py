"""With api.keys set, the dashboard asks for a key once, says clearly when it is wrong, and sends
it only as a bearer header (never in the address); without keys on loopback it just works."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.dashboard.browser import Browser
from tests.sidecar import Sidecar

pytestmark = pytest.mark.timeout(180)

KEY = "dash-key-7f3a9c2e41b86d05"
WRONG = "dash-key-not-this-one-0000"


def test_no_key_prompts_a_wrong_key_is_refused_the_right_key_is_kept(
    browser: Browser, make_sidecar: Callable[..., Sidecar], tmp_path: Path
) -> None:
    daemon = make_sidecar(env={"DUNETRACE_API_KEYS": KEY})
    browser.open(daemon.api_url + "/")

    # No key: the page asks for one, and shows nothing of the API.
    browser.wait("key-prompt")
    assert "needs a key" in browser.text("key-message")
    assert browser.wait("needs-key")
    browser.screenshot("key-prompt", tmp_path)

    # A wrong key: refused, asked again with a clear message.
    browser.fill("key-input", WRONG)
    browser.click("key-submit")
    browser.wait_text("key-message", "refused")
    assert browser.find("key-prompt").is_displayed()

    # The right key: the page loads, the key stays for the tab and never enters the address.
    browser.fill("key-input", KEY)
    browser.click("key-submit")
    browser.wait("agents")
    assert not browser.find("key-prompt").is_displayed()
    browser.click("nav-policies")
    browser.wait("policies-table-empty")
    browser.open(daemon.api_url + "/#/runs")  # a new document in the same tab: no prompt
    browser.wait("runs-table-empty")
    assert not browser.find("key-prompt").is_displayed()
    assert KEY not in browser.url and WRONG not in browser.url
    assert browser.driver.get_cookies() == []
    assert KEY not in daemon.log_text()

    # Forget the key: asked again.
    browser.click("forget-key")
    browser.wait("key-prompt")
    browser.driver.execute_script("sessionStorage.clear()")


def test_without_keys_on_loopback_there_is_no_prompt(browser: Browser, dash_daemon: Sidecar) -> None:
    browser.open(dash_daemon.api_url + "/#/policies")
    browser.until(
        lambda: browser.present("policies-table") or browser.present("policies-table-empty") or None, "policies"
    )
    assert not browser.find("key-prompt").is_displayed()
    assert not browser.find("forget-key").is_displayed()


def test_the_page_runs_under_its_csp_and_a_violation_would_be_seen(browser: Browser, dash_daemon: Sidecar) -> None:
    """What makes the console check of every test meaningful: an inline script is refused and logged."""
    browser.open(dash_daemon.api_url + "/")
    browser.wait("health")
    browser.driver.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.__inline = 1'; document.body.append(s);"
    )
    assert browser.driver.execute_script("return window.__inline === undefined") is True
    problems = browser.until(lambda: browser.console_problems() or None, "the CSP violation in the console")
    assert any("Content Security Policy" in p for p in problems), problems
