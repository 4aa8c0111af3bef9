"""Signals in the dashboard: the list, a signal's page, Explain → Apply → Roll back against the
fake Langfuse and fake LLM, and a blocked fix that offers no Apply (and that the API refuses)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dashboard.browser import Browser
from tests.explain.test_explain_loop import (
    ERRORS,
    FIX_SECOND,
    FIX_SENTENCE,
    PROMPT_TEXT,
    ROOT_CAUSE,
    TOOLLOOP,
    apply_fix,
    assert_error,
    make_run,
    seed_trace,
    send,
    signal_of,
)
from tests.fakes.langfuse_server import FakeLangfuse
from tests.sidecar import Sidecar

pytestmark = pytest.mark.timeout(180)

PROMPT = "dash-support-agent"


def test_explain_apply_and_roll_back_a_tool_loop_fix(
    browser: Browser, dash_daemon: Sidecar, dash_langfuse: FakeLangfuse, tmp_path: Path
) -> None:
    dash_langfuse.seed_prompt(PROMPT, PROMPT_TEXT, labels=["production"])
    run = make_run(TOOLLOOP, prompt=(PROMPT, 1))
    seed_trace(dash_langfuse, run, (PROMPT, 1))
    send(dash_daemon, run)
    signal_id = signal_of(dash_daemon, run.run_id, "TOOL_LOOP")["signal_id"]

    # The list shows it; a click on its row opens it.
    browser.open(dash_daemon.api_url + "/#/signals")
    row = browser.wait_css(f'[data-testid="signal-row"][data-signal-id="{signal_id}"]')
    assert "TOOL_LOOP" in row.text and "support_agent" in row.text
    browser.screenshot("signals", tmp_path)
    row.click()
    assert browser.wait("signal-type").text == "TOOL_LOOP"
    assert browser.url.endswith(f"#/signals/{signal_id}")

    # The deterministic explanation, the evidence and the step graph with the proving step marked:
    # the third identical lookup_order call, at step 6.
    assert "lookup_order" in browser.text("explanation-what")
    assert browser.text("signal-step-index") == "6"
    marked = browser.wait("signal-step")
    assert marked.get_attribute("data-step") == "6"
    assert "tool.called" in marked.text and "lookup_order" in marked.text
    assert browser.find_all("step-node"), "the other steps are drawn too"
    assert browser.wait("fix-none").text  # no fix applied yet

    # Explain: the fake LLM's root cause, the fix cut to one sentence, its type, the source.
    browser.click("explain-button")
    browser.wait("explain-result")
    assert browser.text("explain-root-cause") == ROOT_CAUSE
    assert browser.text("explain-fix") == FIX_SENTENCE
    assert FIX_SECOND not in browser.text("explain-fix")
    assert browser.text("explain-fix-type") == "prompt_addition"
    assert browser.text("explain-blocked") == "allowed"
    assert browser.text("explain-source") == "langfuse"
    assert browser.text("explain-prompt") == f"{PROMPT} v1"

    # Apply: published as version 2, the link points at it, the label moved.
    browser.click("apply-button")
    link = browser.wait("applied-link")
    assert link.text == "Applied as v2 in Langfuse ↗"
    expected_url = f"{dash_langfuse.base_url}/project/{dash_langfuse.project_id}/prompts/{PROMPT}?version=2"
    assert link.get_attribute("href") == expected_url
    assert link.get_attribute("target") == "_blank" and "noopener" in (link.get_attribute("rel") or "")
    versions = dash_langfuse.versions(PROMPT)
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["prompt"] == f"{PROMPT_TEXT}\n\n{FIX_SENTENCE}"
    assert dash_langfuse.label_version(PROMPT, "production") == 2

    # The fix status on the signal: no run since, so no verdict yet.
    assert browser.wait_text("fix-versions", "v1 → v2")
    assert browser.text("fix-runs-after") == "0"
    assert browser.text("fix-recurrences") == "0"
    assert browser.text("fix-adopted") == "0"
    assert browser.text("fix-verdict") == "insufficient_data"
    assert browser.text("fix-rolled-back") == "no"
    browser.screenshot("signal", tmp_path, at="steps")
    # after a reload the fix status still links the published version
    browser.open(browser.url)
    reloaded = browser.wait("fix-prompt-link")
    assert reloaded.get_attribute("href") == expected_url
    assert reloaded.text == f"{PROMPT} v2 in Langfuse ↗"

    # Roll back: the label goes back to version 1.
    browser.click("rollback-button")
    assert "v1" in browser.wait("rollback-result").text
    browser.wait_text("fix-rolled-back", "yes")
    assert not browser.present("rollback-button")
    assert dash_langfuse.label_version(PROMPT, "production") == 1
    assert dash_daemon.api_json(f"/v1/signals/{signal_id}/fix-status")["rolled_back"] is True


def test_a_blocked_fix_offers_no_apply_and_the_api_still_refuses(
    browser: Browser, dash_daemon: Sidecar, dash_langfuse: FakeLangfuse
) -> None:
    dash_langfuse.seed_prompt("dash-blocked-agent", PROMPT_TEXT, labels=["production"])
    run = make_run(ERRORS)
    send(dash_daemon, run)
    signal_id = signal_of(dash_daemon, run.run_id, "FIRST_STEP_FAILURE")["signal_id"]

    browser.open(f"{dash_daemon.api_url}/#/signals/{signal_id}")
    assert browser.wait("signal-type").text == "FIRST_STEP_FAILURE"
    browser.click("explain-button")
    browser.wait("explain-result")
    assert browser.text("explain-fix-type") == "code_change"
    assert browser.text("explain-blocked") == "blocked"
    assert "code" in browser.wait("apply-blocked").text
    assert not browser.present("apply-button")

    fix = {"fix_content": FIX_SENTENCE, "langfuse_prompt_name": "dash-blocked-agent"}
    assert_error(apply_fix(dash_daemon, signal_id, fix), 403, "fix_blocked")
    assert dash_langfuse.publishes("dash-blocked-agent") == []


def test_signals_filter_by_type_and_severity(browser: Browser, dash_daemon: Sidecar) -> None:
    loop = make_run(TOOLLOOP)
    send(dash_daemon, loop)
    loop_signal = signal_of(dash_daemon, loop.run_id, "TOOL_LOOP")["signal_id"]
    errors = make_run(ERRORS)
    send(dash_daemon, errors)
    first_step = signal_of(dash_daemon, errors.run_id, "FIRST_STEP_FAILURE")["signal_id"]

    browser.open(dash_daemon.api_url + "/#/signals")
    browser.wait_css(f'[data-signal-id="{loop_signal}"]')
    browser.fill("filter-type", "first_step_failure")
    browser.click("filter-apply")
    browser.wait_css(f'[data-signal-id="{first_step}"]')
    browser.until(
        lambda: not browser.driver.find_elements("css selector", f'[data-signal-id="{loop_signal}"]'), "the loop to go"
    )
    types = {row.get_attribute("data-failure-type") for row in browser.find_all("signal-row")}
    assert types == {"FIRST_STEP_FAILURE"}
    assert "failure_type=FIRST_STEP_FAILURE" in browser.url  # the filter is in the address, shareable

    browser.fill("filter-type", "")
    browser.choose("filter-severity", "HIGH")  # TOOL_LOOP with identical arguments is HIGH; FIRST_STEP is MEDIUM
    browser.click("filter-apply")
    browser.wait_css(f'[data-signal-id="{loop_signal}"]')
    assert not browser.driver.find_elements("css selector", f'[data-signal-id="{first_step}"]')

    # A preset window keeps the other filters, and the form keeps the window.
    browser.click("window-1h")
    browser.until(lambda: "window=1h" in browser.url or None, "the 1 h window")
    assert "severity=HIGH" in browser.url
    browser.wait_css(f'[data-signal-id="{loop_signal}"]')  # detected seconds ago
    assert browser.find("window-1h").get_attribute("aria-current") == "true"
    browser.choose("filter-severity", "MEDIUM")
    browser.click("filter-apply")
    browser.wait_css(f'[data-signal-id="{first_step}"]')
    assert "window=1h" in browser.url and "severity=MEDIUM" in browser.url
