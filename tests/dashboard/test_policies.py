"""Policies in the dashboard: the seed docs' three examples entered as written, edited, toggled
and deleted, with the API agreeing at each step; a bad policy shows the API's error at its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.browser import Browser
from tests.sidecar import Sidecar, http

pytestmark = pytest.mark.timeout(180)

LOOP_PROMPT = "Stop repeating tool calls. Summarise what you know and answer directly."


def policies(daemon: Sidecar) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in daemon.api_json("/v1/policies")["policies"]}


def row(browser: Browser, name: str) -> Any:
    return browser.wait_css(f'[data-testid="policy-row"][data-policy-name="{name}"]')


def enter(browser: Browser, name: str, trigger: str, operator: str, value: str, action: str, **params: str) -> None:
    """The New policy form, filled in as a person would."""
    browser.click("policy-new")
    browser.wait("policy-form")
    browser.fill("policy-name", name)
    browser.choose("policy-trigger", trigger)
    browser.choose("policy-operator", operator)
    browser.fill("policy-value", value)
    browser.choose("policy-action-type", action)
    if "model" in params:
        browser.fill("policy-model", params["model"])
    if "prompt" in params:
        browser.fill("policy-prompt", params["prompt"])


def test_create_edit_toggle_delete_the_seed_examples(browser: Browser, dash_daemon: Sidecar, tmp_path: Path) -> None:
    browser.open(dash_daemon.api_url + "/#/policies")
    browser.wait("policies-table-empty")

    # The three examples of the Dunetrace docs, as written there.
    enter(browser, "cap tool calls", "tool_call_count", "gt", "5", "stop")
    browser.click("policy-save")
    browser.wait_text("flash", "created")
    row(browser, "cap tool calls")
    enter(browser, "cost cap", "cost_usd", "gt", "0.50", "switch_model", model="gpt-4o-mini")
    browser.screenshot("policy-form", tmp_path)
    browser.click("policy-save")
    row(browser, "cost cap")
    enter(browser, "loop fix", "signal", "eq", "TOOL_LOOP", "inject_prompt", prompt=LOOP_PROMPT)
    browser.click("policy-save")
    row(browser, "loop fix")

    stored = policies(dash_daemon)
    assert set(stored) == {"cap tool calls", "cost cap", "loop fix"}
    cap, cost, loop = stored["cap tool calls"], stored["cost cap"], stored["loop fix"]
    assert cap["condition"] == {"trigger": "tool_call_count", "operator": "gt", "value": 5}
    assert cap["action"] == {"type": "stop", "params": {}}
    assert cost["condition"] == {"trigger": "cost_usd", "operator": "gt", "value": 0.5}
    assert cost["action"] == {"type": "switch_model", "params": {"model": "gpt-4o-mini"}}
    assert loop["condition"] == {"trigger": "signal", "operator": "eq", "value": "TOOL_LOOP"}
    assert loop["action"] == {"type": "inject_prompt", "params": {"prompt": LOOP_PROMPT}}
    assert all(p["agent_id"] == "*" and p["priority"] == 100 and p["enabled"] for p in stored.values())
    assert "switch_model → gpt-4o-mini" in row(browser, "cost cap").text
    browser.screenshot("policies", tmp_path)

    # Edit: the cap goes to 8 tool calls, priority 10.
    browser.click("policy-edit", within=row(browser, "cap tool calls"))
    assert browser.wait("policy-value").get_attribute("value") == "5"
    browser.fill("policy-value", "8")
    browser.fill("policy-priority", "10")
    browser.click("policy-save")
    browser.wait_text("flash", "saved")
    browser.wait_text("policies-table", "tool_call_count gt 8")
    edited = policies(dash_daemon)["cap tool calls"]
    assert edited["id"] == cap["id"]
    assert edited["condition"]["value"] == 8 and edited["priority"] == 10

    # Toggle off and on again.
    browser.click("policy-toggle", within=row(browser, "cost cap"))
    browser.until(lambda: row(browser, "cost cap").text.count("Disabled") == 1 or None, "cost cap disabled")
    assert policies(dash_daemon)["cost cap"]["enabled"] is False
    browser.click("policy-toggle", within=row(browser, "cost cap"))
    browser.until(lambda: "Enabled" in row(browser, "cost cap").text or None, "cost cap enabled")
    assert policies(dash_daemon)["cost cap"]["enabled"] is True

    # Delete asks once more, then deletes.
    browser.click("policy-delete", within=row(browser, "loop fix"))
    assert "loop fix" in policies(dash_daemon)  # not on the first click
    browser.click("policy-delete-confirm", within=row(browser, "loop fix"))
    browser.wait_text("flash", "deleted")
    assert set(policies(dash_daemon)) == {"cap tool calls", "cost cap"}

    for policy in policies(dash_daemon).values():  # leave the shared daemon without policies
        assert http("DELETE", f"{dash_daemon.api_url}/v1/policies/{policy['id']}").status == 204


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (("tool_call_count", "contains", "5", "stop"), "condition.operator", "does not apply to tool_call_count"),
        (("cost_usd", "gt", "half a dollar", "stop"), "condition.value", "takes a finite number"),
        (("signal", "eq", "TOOL_LOOP", "inject_prompt"), "action.params.prompt", "needs the prompt"),
        (("step_count", "gt", "3", "switch_model"), "action.params.model", "needs the model"),
    ],
)
def test_a_bad_policy_shows_the_apis_error_next_to_its_field(
    browser: Browser, dash_daemon: Sidecar, tmp_path: Path, fields: tuple[str, str, str, str], field: str, message: str
) -> None:
    browser.open(dash_daemon.api_url + "/#/policies")
    enter(browser, "bad one", *fields)
    browser.click("policy-save")
    error = browser.wait(f"field-error-{field}")
    assert message in error.text
    others = [
        e for e in browser.find_all("policy-form")[0].find_elements("css selector", ".field-error") if e.is_displayed()
    ]
    assert others == [error], "only the named field shows an error"
    assert "bad one" not in policies(dash_daemon)
    if field == "condition.value":
        browser.screenshot("policy-error", tmp_path, at="policy-form")
