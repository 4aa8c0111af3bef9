"""An export the daemon acknowledged survives kill -9; a restart picks runs up where they were."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from tests.receiver.test_delivery import span_count, split_requests
from tests.sidecar import FIXTURES, Sidecar, with_new_trace_ids


def _fresh(name: str, kind: str = "traces") -> tuple[bytes, dict[str, str]]:
    return with_new_trace_ids((FIXTURES / name).read_bytes(), kind)


def _restart(daemon: Sidecar) -> Sidecar:
    return daemon.start()


def test_kill_9_right_after_acknowledged_http_and_grpc_exports(make_sidecar: Callable[..., Sidecar]) -> None:
    daemon = make_sidecar()
    http_body, http_ids = _fresh("openllmetry-openai-toolloop.pb")
    grpc_body, grpc_ids = _fresh("openinference-anthropic-errors.pb")
    assert daemon.post_otlp(http_body).status == 200
    daemon.grpc_export(grpc_body)
    daemon.kill()  # no shutdown path, no checkpoint

    _restart(daemon)
    [http_run] = http_ids.values()
    [grpc_run] = grpc_ids.values()
    loop = daemon.run(http_run)
    assert (loop["status"], loop["llm_calls"], loop["tool_calls"], len(loop["events"])) == ("completed", 4, 4, 18)
    errors = daemon.run(grpc_run)
    assert (errors["status"], errors["llm_calls"], errors["tool_calls"], errors["errors"]) == ("errored", 4, 1, 2)


def test_run_rows_journaled_before_a_kill_9_are_folded_at_the_next_start(make_sidecar: Callable[..., Sidecar]) -> None:
    """A transaction appends its run rows to run_journal; the writer folds them into runs about
    once a second. Killed before the fold, the file holds the row in the journal (readers see it
    through runs_now) and the next start folds it."""
    daemon = make_sidecar()
    body, ids = _fresh("openllmetry-openai-toolloop.pb")
    [run_id] = ids.values()
    assert daemon.post_otlp(body).status == 200
    daemon.kill()  # within the second: no fold yet, no checkpoint
    query = "SELECT status, llm_calls, tool_calls FROM {} WHERE run_id = ?::UUID"
    with duckdb.connect(str(daemon.db_path), read_only=True) as conn:
        assert conn.execute(query.format("runs"), [run_id]).fetchall() == []
        assert conn.execute(query.format("runs_now"), [run_id]).fetchall() == [("completed", 4, 4)]
        journaled = conn.execute("SELECT count(*) FROM run_journal WHERE run_id = ?::UUID", [run_id]).fetchone()
        assert journaled is not None and journaled[0] >= 1
    _restart(daemon)
    assert (daemon.run(run_id)["status"], daemon.run(run_id)["llm_calls"]) == ("completed", 4)
    assert daemon.stop() == 0
    with duckdb.connect(str(daemon.db_path), read_only=True) as conn:
        assert conn.execute(query.format("runs"), [run_id]).fetchall() == [("completed", 4, 4)]
        assert conn.execute("SELECT count(*) FROM run_journal").fetchone() == (0,)


def test_many_acknowledged_exports_then_kill_9(make_sidecar: Callable[..., Sidecar]) -> None:
    daemon = make_sidecar()
    acknowledged = []
    for _ in range(30):
        body, ids = _fresh("otelgenai-openai-toolcall.pb")
        assert daemon.post_otlp(body).status == 200
        acknowledged.extend(ids.values())
    daemon.kill()
    _restart(daemon)
    for run_id in acknowledged:
        run = daemon.run(run_id)
        assert run["status"] == "completed" and run["llm_calls"] == 4


def test_a_run_split_by_a_crash_is_completed_exactly_once(make_sidecar: Callable[..., Sidecar]) -> None:
    """Children before the crash, the root after it: the rebuilt run state pairs and counts
    as if nothing had happened, and re-sent spans are not counted twice."""
    daemon = make_sidecar()
    body, ids = _fresh("openllmetry-openai-toolloop.pb")
    [run_id] = ids.values()
    pieces = split_requests(body, [1] * span_count(body))
    for piece in pieces[:-1]:
        assert daemon.post_otlp(piece).status == 200
    daemon.kill()
    _restart(daemon)
    for piece in pieces:  # the exporter retries everything, then the root arrives
        assert daemon.post_otlp(piece).status == 200
    run = daemon.run(run_id)
    assert (run["status"], run["llm_calls"], run["tool_calls"], run["step_count"]) == ("completed", 4, 4, 8)
    assert run["events"][-1]["payload"]["total_steps"] == 8
    assert sum(1 for e in run["events"] if e["event_type"] == "tool.called") == 4


def test_log_content_acknowledged_before_its_spans_survives_a_crash(make_sidecar: Callable[..., Sidecar]) -> None:
    """Events mode: content arrives on /v1/logs first; the spans come after a kill -9."""
    daemon = make_sidecar()
    logs, log_ids = _fresh("openllmetry-events-openai-toolcall.logs.pb", "logs")
    traces = (FIXTURES / "openllmetry-events-openai-toolcall.traces.pb").read_bytes()
    from tests.sidecar import trace_ids_in

    [original] = trace_ids_in(traces)
    # Give the traces the same new trace id as the logs.
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(traces)
    new_id = bytes.fromhex(log_ids[original].replace("-", ""))
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                span.trace_id = new_id
    assert daemon.post_otlp(logs, path="/v1/logs").status == 200
    daemon.kill()
    _restart(daemon)
    assert daemon.post_otlp(request.SerializeToString()).status == 200
    run = daemon.run(log_ids[original])
    responded = [e["payload"] for e in run["events"] if e["event_type"] == "llm.responded"]
    # Three answers had text in their gen_ai.choice records; the streamed one's record was
    # attached to the agent span, not the LLM span, so that call has no output features.
    assert [p.get("output_length") is not None for p in responded] == [True, True, True, False]
    assert responded[1]["tool_calls_requested"] == ["get_weather"]
    assert run["tool_calls"] == 1  # the tool span and the requested call are one call


def test_graceful_stop_checkpoints_and_reopens(make_sidecar: Callable[..., Sidecar]) -> None:
    daemon = make_sidecar()
    body, ids = _fresh("openllmetry-legacy-openai-errors.pb")
    assert daemon.post_otlp(body).status == 200
    assert daemon.stop() == 0
    assert "stopped" in daemon.log_text()
    # The file is a plain DuckDB database any client can open once the daemon is gone.
    with duckdb.connect(str(daemon.db_path), read_only=True) as conn:
        rows: list[Any] = conn.execute("SELECT status, llm_calls FROM runs").fetchall()
        assert rows == [("errored", 4)]
        version = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        assert version == (8,)  # every migration in store/migrations.py applied
    _restart(daemon)
    assert daemon.run(next(iter(ids.values())))["llm_calls"] == 4


def test_signals_of_an_acknowledged_export_survive_kill_9_and_are_not_raised_twice(
    make_sidecar: Callable[..., Sidecar],
) -> None:
    daemon = make_sidecar()
    body, ids = _fresh("openllmetry-openai-toolloop.pb")
    [run_id] = ids.values()
    pieces = split_requests(body, [1] * span_count(body))
    for piece in pieces[:-1]:  # the loop is proved mid-run, before the root arrives
        assert daemon.post_otlp(piece).status == 200
    daemon.kill()
    _restart(daemon)
    [signal] = daemon.api_json(f"/v1/signals?run_id={run_id}")["signals"]
    assert (signal["failure_type"], signal["step_index"]) == ("TOOL_LOOP", 6)
    for piece in pieces:  # the exporter retries everything, then the root completes the run
        assert daemon.post_otlp(piece).status == 200
    run = daemon.run(run_id)
    assert run["status"] == "completed"
    assert [s["signal_id"] for s in run["signals"]] == [signal["signal_id"]]
    assert run["signals"][0]["detected_at"] == signal["detected_at"]  # the stored one, not a new one


def test_a_signal_written_again_is_rewritten_not_refused(tmp_path: Path) -> None:
    """Signals are inserted (they are new when raised); one stored before — a client's retry of an
    export whose commit it never heard of — makes the writer upsert instead of failing the batch."""
    import uuid

    from detectors.base import Signal
    from store.duckdb_store import DuckStore, WriteBatch

    run_id = str(uuid.uuid4())

    def signal(severity: str) -> Signal:
        evidence = {"tool": "search"}
        return Signal(f"sig-{run_id}", run_id, "agent", "TOOL_LOOP", severity, 0.9, 3, evidence, 1, "live", False)

    store = DuckStore(str(tmp_path / "store.duckdb"))
    store.open()
    try:
        store.submit(WriteBatch(signals=[signal("HIGH")])).result(timeout=30)
        other = Signal(f"sig-{uuid.uuid4()}", run_id, "agent", "RETRY_STORM", "MEDIUM", 0.5, 4, {}, 2, "live", False)
        store.submit(WriteBatch(signals=[signal("CRITICAL"), other])).result(timeout=30)
        stored = sorted((s.signal_id, s.failure_type, s.severity) for s in store.run_signals(run_id))
        assert stored == sorted(
            [(f"sig-{run_id}", "TOOL_LOOP", "CRITICAL"), (other.signal_id, "RETRY_STORM", "MEDIUM")]
        )
    finally:
        store.close()


def test_journaled_run_rows_are_read_at_once_and_folded_by_a_later_write(tmp_path: Path) -> None:
    """Readers see a run's latest row as soon as its batch is committed (runs_now); a write a
    second after the first journaled row folds the journal into runs."""
    import time
    import uuid

    from detectors.events import RunRow
    from store.duckdb_store import FOLD_INTERVAL_S, DuckStore, RunFilter, WriteBatch

    def row(run_id: str, steps: int, status: str = "running") -> RunRow:
        return RunRow(run_id, "agent", None, status, 1, None, 2, steps, steps, 0, 0, 0, 10, 5, None)

    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    store = DuckStore(str(tmp_path / "store.duckdb"))
    store.open()
    try:
        store.submit(WriteBatch(runs=[row(first, 1)])).result(timeout=30)
        store.submit(WriteBatch(runs=[row(first, 2), row(second, 1)])).result(timeout=30)
        assert [(r.run_id, r.step_count) for r in store.get_runs([first, second])] in (
            [(first, 2), (second, 1)],
            [(second, 1), (first, 2)],
        )
        table = store._cursor().execute("SELECT count(*) FROM runs").fetchone()
        journal = store._cursor().execute("SELECT count(*) FROM run_journal").fetchone()
        assert (table, journal) == ((0,), (3,))

        time.sleep(FOLD_INTERVAL_S + 0.2)
        store.submit(WriteBatch(runs=[row(first, 3, "completed")])).result(timeout=30)
        deadline = time.monotonic() + 10  # the fold runs on the writer thread after the answer
        while store._cursor().execute("SELECT count(*) FROM run_journal").fetchone() != (0,):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        stored = store._cursor().execute("SELECT run_id::VARCHAR, step_count, status FROM runs").fetchall()
        assert sorted(stored) == sorted([(first, 3, "completed"), (second, 1, "running")])
        [listed] = [r for r in store.list_runs(RunFilter()) if r.run_id == first]
        assert (listed.step_count, listed.status) == (3, "completed")
    finally:
        store.close()


def test_pages_of_runs_and_signals_are_the_same_whatever_time_window_answers(tmp_path: Path) -> None:
    """A page is first asked for within a time window before its upper end (sized from the store's
    average rate, then widened): over runs and signals dense in the last hour and sparse for 90
    days before, paging with every filter gives exactly the newest-first order of what was
    written, whichever window answered."""
    import random
    import uuid
    from dataclasses import replace

    from detectors.base import Signal
    from detectors.events import RunRow
    from store.duckdb_store import DuckStore, RunFilter, SignalFilter, WriteBatch

    rng = random.Random(5)
    now = 1_800_000_000 * 10**9
    hour = 3_600 * 10**9
    # dense in the last hour, sparse further back: every window both fills and misses a page
    ages = [rng.randrange(hour) for _ in range(150)] + [rng.randrange(hour, 90 * 24 * hour) for _ in range(20)]
    ages += [ages[0]] * 4  # ties on time: the id orders them
    runs = [
        RunRow(str(uuid.uuid4()), rng.choice(["a", "b"]), None, rng.choice(["running", "errored"]), now - age,
               None, now - age, 3, 1, 1, 0, 0, 1, 1, None)
        for age in ages
    ]  # fmt: skip
    signals = [
        Signal(f"sig-{r.run_id}", r.run_id, r.agent_id, "TOOL_LOOP", "HIGH", 0.9, 2, {}, r.started_ns, "live", False)
        for r in runs
    ]
    store = DuckStore(str(tmp_path / "store.duckdb"))
    store.open()
    try:
        store.submit(WriteBatch(runs=runs, signals=signals)).result(timeout=30)

        def expected(rows: list[tuple[int, str]]) -> list[str]:
            return [i for _, i in sorted(rows, reverse=True)]

        def page_through(
            fetch: Callable[[Any], list[Any]], flt: Any, key: Callable[[Any], tuple[int, str]]
        ) -> list[str]:
            """Every page, each after the last row of the one before, as a client pages."""
            out: list[str] = []
            while True:
                page = fetch(flt)
                out += [key(row)[1] for row in page]
                if len(page) < flt.limit:
                    return out
                flt = replace(flt, after=key(page[-1]))

        month_ago = now - 30 * 24 * hour
        for agent, status, since in (
            (None, None, None),
            (None, None, month_ago),
            ("a", None, None),
            (None, "errored", month_ago),
        ):
            flt = RunFilter(agent_id=agent, status=status, since_ns=since, limit=17)
            paged = page_through(store.list_runs, flt, lambda r: (r.started_ns, r.run_id))
            wanted = [
                (r.started_ns, r.run_id) for r in runs
                if (agent is None or r.agent_id == agent) and (status is None or r.status == status)
                and (since is None or r.started_ns >= since)
            ]  # fmt: skip
            assert paged == expected(wanted), (agent, status, since)

        for agent in (None, "b"):
            paged = page_through(
                store.list_signals, SignalFilter(agent_id=agent, limit=13), lambda s: (s.detected_ns, s.signal_id)
            )
            assert paged == expected([(s.detected_ns, s.signal_id) for s in signals if agent in (None, s.agent_id)])
    finally:
        store.close()
