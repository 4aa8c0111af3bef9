"""Delivery through the published SDK (dunetrace==0.5.7): its retries deliver each event once, and what the
daemon acknowledged survives kill -9. A proxy of ours (tests/fakes/ingest_proxy.py) stands between the SDK and the
real daemon: it answers 503 + Retry-After itself (retry test) or only watches the answers (kill test).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.fakes.ingest_proxy import Exchange, IngestProxy
from tests.sdk.harness import Api, ScenarioRun, event_counts, run_scenario
from tests.sidecar import Sidecar

RETRY_EVENTS = {
    "run.started": 1,
    "llm.called": 2,
    "llm.responded": 2,
    "tool.called": 2,
    "tool.responded": 2,
    "run.completed": 1,
}


def test_retry_after_503_delivers_each_event_once(sdk_python: Path, sdk_daemon: Callable[..., Sidecar]) -> None:
    daemon = sdk_daemon()
    api = Api(daemon)
    with IngestProxy(daemon.api_url, fail_first=2, retry_after=1) as proxy:
        out = run_scenario(
            sdk_python,
            "r_retry",
            proxy.url,
            api_url=daemon.api_url,
            extra_env={"DT_WAIT_STORED_S": "30"},
        )
        ingests = proxy.ingests()
    run_id = out.result["run_id"]
    assert out.result["stored"] == {run_id: 200}, out.stderr

    # The wire: two 503s answered by the proxy, then the same batch (same event ids) accepted by the daemon.
    assert [(x.status, x.answered_by) for x in ingests[:2]] == [(503, "proxy"), (503, "proxy")]
    assert all(x.ok for x in ingests[2:]), [(x.status, x.answered_by) for x in ingests]
    sent_ids = [e["event_id"] for x in ingests for e in x.events]
    delivered_ids = [e["event_id"] for x in ingests if x.ok for e in x.events]
    assert sorted(set(sent_ids)) == sorted(delivered_ids)  # every event reached the daemon once, in a 2xx
    assert len(delivered_ids) == sum(RETRY_EVENTS.values())

    run = api.wait_run(run_id)
    assert (run["agent_id"], run["source"]) == ("retry-agent", "sdk")
    assert (run["status"], run["exit_reason"]) == ("completed", "final_answer")
    assert (run["llm_calls"], run["tool_calls"]) == (2, 2)
    assert (run["prompt_tokens"], run["completion_tokens"]) == (280, 60)
    assert event_counts(run) == RETRY_EVENTS
    assert len({e["event_id"] for e in run["events"]}) == len(run["events"])
    assert api.agents()["retry-agent"]["run_count"] == 1


def test_retried_batch_sent_twice_is_stored_once(sdk_python: Path, sdk_daemon: Callable[..., Sidecar]) -> None:
    """At-least-once delivery: the daemon de-duplicates on the SDK's event_id. Replay every accepted ingest POST of a
    run a second time, byte for byte, as a retry after a lost answer would; the run does not change."""
    daemon = sdk_daemon()
    api = Api(daemon)
    with IngestProxy(daemon.api_url) as proxy:
        out = run_scenario(sdk_python, "r_retry", proxy.url, api_url=daemon.api_url)
        ingests = [x for x in proxy.ingests() if x.ok]
    run_id = out.result["run_id"]
    first = api.wait_run(run_id)
    for exchange in ingests:
        again = api.post("/v1/ingest", exchange.body)
        assert 200 <= again.status < 300, again.body[:300]
    second = api.wait_run(run_id)
    assert event_counts(second) == event_counts(first) == RETRY_EVENTS
    assert (second["llm_calls"], second["tool_calls"], second["status"]) == (2, 2, "completed")


def test_kill_9_after_2xx_loses_nothing(sdk_python: Path, sdk_daemon: Callable[..., Sidecar]) -> None:
    daemon = sdk_daemon()
    with IngestProxy(daemon.api_url) as proxy:

        def completed_acked(exchanges: list[Exchange]) -> bool:
            return any(
                x.ok and x.path == "/v1/ingest" and any(e["event_type"] == "run.completed" for e in x.events)
                for x in exchanges
            )

        runs: list[ScenarioRun] = []
        script = threading.Thread(
            target=lambda: runs.append(run_scenario(sdk_python, "k_durable", proxy.url, api_url=daemon.api_url))
        )
        script.start()
        try:
            proxy.wait_until(completed_acked, timeout=60, what="the 2xx for run.completed")
            daemon.kill()  # SIGKILL the moment the SDK has its 2xx: no shutdown path runs
        finally:
            script.join(timeout=150)
        acked = Counter(e["event_type"] for e in proxy.delivered_events())

    assert len(runs) == 1, "the scenario failed (see the thread's exception above)"
    run_id = runs[0].result["run_id"]
    assert acked == {
        "run.started": 1,
        "llm.called": 2,
        "llm.responded": 2,
        "tool.called": 3,
        "tool.responded": 3,
        "run.completed": 1,
    }
    daemon.start()  # the same database file
    api = Api(daemon)
    run = api.wait_run(run_id)
    assert (run["agent_id"], run["source"]) == ("durable-agent", "sdk")
    assert (run["status"], run["exit_reason"]) == ("completed", "final_answer")
    assert (run["llm_calls"], run["tool_calls"]) == (2, 3)
    assert event_counts(run) == acked
