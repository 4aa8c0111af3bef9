"""A store written under an earlier schema opens under this one with every row as it was.

Version 8 took the primary key off ``runs``: DuckDB holds a key's index in memory (~47 bytes per
stored run) and the fold's upsert loaded it whole, so a store of a few million runs ran out of
the memory limit. The store below is built as the daemon left it at version 7 (the migrations up
to 7, folded rows in ``runs``, newer unfolded rows in ``run_journal``), with values chosen here.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import duckdb

from store.duckdb_store import FOLD_INTERVAL_S
from store.migrations import MIGRATIONS
from tests.receiver.test_delivery import span_count, split_requests
from tests.sidecar import Sidecar, fixture_bytes, with_new_trace_ids

RUN_INSERT = (
    "INSERT INTO {table} ({seq}run_id, agent_id, service_name, status, started_ns, ended_ns, last_event_ns,"
    " step_count, llm_calls, tool_calls, retrievals, errors, prompt_tokens, completion_tokens, exit_reason,"
    " updated_ns, source) VALUES ({marks})"
)


def _store_at_version_7(path: Path, folded: list[tuple[object, ...]], journaled: list[tuple[object, ...]]) -> None:
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_ns BIGINT NOT NULL)")
    for version, statements in MIGRATIONS:
        if version > 7:
            break
        for sql in statements:
            conn.execute(sql)
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", [version])
    for row in folded:
        conn.execute(RUN_INSERT.format(table="runs", seq="", marks=", ".join("?" * 17)), list(row))
    for seq, row in enumerate(journaled, start=1):
        conn.execute(RUN_INSERT.format(table="run_journal", seq="seq, ", marks=", ".join("?" * 18)), [seq, *row])
    conn.close()


def _row(run_id: str, status: str, llm_calls: int, source: str = "otlp") -> tuple[object, ...]:
    ended = 2_000 if status != "running" else None
    return (run_id, "billing-agent", "svc", status, 1_000, ended, 2_000, 3, llm_calls, 1, 0, 0, 50, 20, None, 5, source)


def test_a_version_7_store_keeps_its_runs_and_loses_the_key(tmp_path: Path) -> None:
    folded_only, updated, journal_only = (str(uuid.uuid4()) for _ in range(3))
    # The rows' times are synthetic (1970): no retention, or they would all be expired runs.
    daemon = Sidecar(tmp_path / "v7", env={"DUNETRACE_STORE_RETENTION_HOURS": "0"})
    daemon.workdir.mkdir(parents=True, exist_ok=True)
    _store_at_version_7(
        daemon.db_path,
        folded=[_row(folded_only, "completed", 2, source="sdk"), _row(updated, "running", 1)],
        journaled=[_row(updated, "running", 2), _row(updated, "errored", 3), _row(journal_only, "completed", 4)],
    )
    daemon.start()
    try:
        seen = {run_id: daemon.run(run_id) for run_id in (folded_only, updated, journal_only)}
        found = [(r["status"], r["llm_calls"]) for r in seen.values()]
        assert found == [("completed", 2), ("errored", 3), ("completed", 4)]
        assert seen[folded_only]["agent_id"] == "billing-agent"
        listed = {run["run_id"] for run in daemon.api_json("/v1/runs?limit=10")["runs"]}
        assert listed == {folded_only, updated, journal_only}

        # A new run written over several folds (one a second, and one at stop) keeps one row.
        body, ids = with_new_trace_ids(fixture_bytes("openllmetry-openai-toolloop.pb"))
        [new_run] = ids.values()
        pieces = split_requests(body, [1] * span_count(body))
        half = len(pieces) // 2
        for piece in pieces[:half]:
            assert daemon.post_otlp(piece).status == 200
        time.sleep(FOLD_INTERVAL_S + 0.2)  # the next write folds the journal: the run's first row
        for piece in pieces[half:]:
            assert daemon.post_otlp(piece).status == 200
        assert daemon.run(new_run)["status"] == "completed"
        assert daemon.stop() == 0
    finally:
        daemon.close()

    with duckdb.connect(str(daemon.db_path), read_only=True) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (8,)
        keys = conn.execute(
            "SELECT constraint_type FROM duckdb_constraints()"
            " WHERE table_name = 'runs' AND constraint_type <> 'NOT NULL'"
        ).fetchall()
        assert keys == []
        rows = conn.execute("SELECT run_id::VARCHAR, status, llm_calls, source FROM runs").fetchall()
        assert sorted(rows) == sorted(
            [
                (folded_only, "completed", 2, "sdk"),
                (updated, "errored", 3, "otlp"),
                (journal_only, "completed", 4, "otlp"),
                (new_run, "completed", 4, "otlp"),
            ]
        )
        assert conn.execute("SELECT count(*) FROM run_journal").fetchone() == (0,)
