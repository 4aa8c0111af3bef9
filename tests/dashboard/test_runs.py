"""Runs in the dashboard: the list, a run's step timeline, and a run in progress that updates
without a reload; and the Overview page."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.dashboard.browser import Browser
from tests.explain.test_explain_loop import TOOLCALL, TOOLLOOP, make_run, send, signal_of
from tests.sidecar import Sidecar

pytestmark = pytest.mark.timeout(180)


def split_root(body: bytes) -> tuple[bytes, bytes]:
    """(every span but the root, the root alone): the run is open until its root arrives."""
    children = ExportTraceServiceRequest.FromString(body)
    root = ExportTraceServiceRequest.FromString(body)
    for request, keep_root in ((children, False), (root, True)):
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                kept = [span for span in ss.spans if (not span.parent_span_id) == keep_root]
                del ss.spans[:]
                ss.spans.extend(kept)
    return children.SerializeToString(), root.SerializeToString()


def test_a_run_in_progress_updates_without_a_reload(browser: Browser, dash_daemon: Sidecar, tmp_path: Path) -> None:
    run = make_run(TOOLLOOP)
    children, root = split_root(run.body)
    assert dash_daemon.post_otlp(children).status == 200
    dash_daemon.wait_run(run.run_id, lambda r: r["tool_calls"] == 4)
    assert dash_daemon.run(run.run_id)["status"] == "running"

    browser.open(f"{dash_daemon.api_url}/#/runs/{run.run_id}")
    assert browser.wait("run-status").get_attribute("data-status") == "running"
    assert browser.wait("live").is_displayed()
    assert browser.text("run-tool-calls") == "4"
    rows = browser.find_all("event-row")
    assert [r.get_attribute("data-event-type") for r in rows].count("tool.called") == 4
    tool_row = next(r for r in rows if r.get_attribute("data-event-type") == "tool.called")
    assert "lookup_order" in tool_row.text and "args sha256:" in tool_row.text  # name, hash
    llm_row = next(r for r in rows if r.get_attribute("data-event-type") == "llm.responded")
    assert "tool_calls" in llm_row.text  # the finish reason
    assert browser.find_all("run-signal"), "the loop was detected while the run was open"
    browser.driver.execute_script("window.__sameDocument = 'yes'")  # gone if the page reloads
    browser.screenshot("run", tmp_path)

    # The root arrives: the page turns to completed by itself, in the same document.
    assert dash_daemon.post_otlp(root).status == 200
    browser.until(
        lambda: browser.find("run-status").get_attribute("data-status") == "completed" or None, "the run to complete"
    )
    assert browser.driver.execute_script("return window.__sameDocument") == "yes"
    browser.until(lambda: not browser.present("live") or None, "live polling to stop once the run is judged")
    assert [r.get_attribute("data-event-type") for r in browser.find_all("event-row")][-1] == "run.completed"


def test_runs_list_and_overview(browser: Browser, dash_daemon: Sidecar, tmp_path: Path) -> None:
    loop = make_run(TOOLLOOP)
    send(dash_daemon, loop)
    signal_of(dash_daemon, loop.run_id, "TOOL_LOOP")
    clean = make_run(TOOLCALL)
    send(dash_daemon, clean)

    browser.open(dash_daemon.api_url + "/#/runs")
    loop_row = browser.wait_css(f'[data-testid="run-row"][data-run-id="{loop.run_id}"]')
    assert "support_agent" in loop_row.text and "completed" in loop_row.text
    browser.wait_css(f'[data-testid="run-row"][data-run-id="{clean.run_id}"]')
    browser.screenshot("runs", tmp_path)
    browser.click("run-link", within=loop_row)
    assert browser.wait("run-status").get_attribute("data-status") == "completed"
    assert browser.url.endswith(f"#/runs/{loop.run_id}")

    browser.click("nav-overview")
    agent = browser.wait_css('[data-testid="agent-row"][data-agent-id="support_agent"]')
    agents = {a["agent_id"]: a for a in dash_daemon.api_json("/v1/agents")["agents"]}
    assert str(agents["support_agent"]["run_count"]) in agent.text
    failed, runs = agents["support_agent"]["failed_runs"], agents["support_agent"]["run_count"]
    assert failed >= 1  # the tool loop
    assert browser.find("agent-failure-rate", within=agent).text == f"{round(100 * failed / runs)} %"
    assert browser.text("health-live") == "ok" and browser.text("health-ready") == "ok"
    assert browser.find_all("signal-row"), "the newest signals"
    browser.screenshot("overview", tmp_path)


def test_the_time_window_picks_the_runs_counted_and_listed(
    browser: Browser, dash_daemon: Sidecar, tmp_path: Path
) -> None:
    old = make_run(TOOLCALL, agent="window_agent", started_ago_s=3 * 86400)  # three days ago
    send(dash_daemon, old)

    def runs_cell() -> str:
        row = browser.wait_css('[data-testid="agent-row"][data-agent-id="window_agent"]')
        return str(row.find_elements("css selector", "td")[1].text)

    # The overview opens on the last 24 h: the agent is listed, with no run in that window.
    browser.open(dash_daemon.api_url + "/")
    assert browser.wait("window-24h").get_attribute("aria-current") == "true"
    assert runs_cell() == "0"
    browser.click("window-7d")
    browser.until(lambda: runs_cell() == "1" or None, "the three-day-old run counted in 7 d")
    assert browser.url.endswith("#/?window=7d")

    # The agent's link lands on its runs in the same window.
    row = browser.wait_css('[data-testid="agent-row"][data-agent-id="window_agent"]')
    row.find_element("link text", "window_agent").click()
    browser.wait_css(f'[data-testid="run-row"][data-run-id="{old.run_id}"]')
    assert browser.find("window-7d").get_attribute("aria-current") == "true"
    assert "agent_id=window_agent" in browser.url and "window=7d" in browser.url
    browser.click("window-24h")
    browser.until(lambda: "window=24h" in browser.url or None, "the 24 h window")
    browser.wait("runs-list")
    assert not browser.driver.find_elements("css selector", f'[data-run-id="{old.run_id}"]')
    browser.click("window-all")
    browser.wait_css(f'[data-testid="run-row"][data-run-id="{old.run_id}"]')
