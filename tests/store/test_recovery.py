"""The store gets out of a database DuckDB gave up on, and keeps every commit.

A checkpoint that fails (out of memory, "failed to pin block": seen under sustained load with a
64 MB ``store.memory_limit``) makes DuckDB invalidate the database: every later statement fails
until it is opened again. Before, the daemon then refused every export until it was restarted by
hand; now the writer closes the database and opens it again (replaying the write-ahead log), and
writes go on.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import duckdb
import pytest

from detectors.events import RunEvent, RunRow
from store.duckdb_store import DuckStore, StoreUnavailable, WriteBatch


def _batch(events: int) -> tuple[str, WriteBatch]:
    run_id = str(uuid.uuid4())
    return run_id, WriteBatch(
        events=[
            RunEvent(run_id, uuid.uuid4().hex, "llm.called", time.time_ns(), uuid.uuid4().hex[:8], {"n": i})
            for i in range(events)
        ],
        runs=[RunRow(run_id, "agent", None, "running", 1, 2, 2, 1, 1, 0, 0, 0, 0, 0, None)],
    )


def _stored(path: Path) -> dict[str, int]:
    """Events per run in the file, read after the store closed."""
    with duckdb.connect(str(path), read_only=True) as conn:
        return dict(conn.execute("SELECT run_id::VARCHAR, count(*) FROM events GROUP BY run_id").fetchall())


def test_a_database_duckdb_invalidated_is_opened_again_and_keeps_every_commit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="dunetrace.store")
    path = tmp_path / "store.duckdb"
    store = DuckStore(str(path))
    store.open()
    try:
        before, batch = _batch(10)
        store.submit(batch).result(timeout=30)
        # DuckDB's own fault injection, as its tests use it: its next checkpoint fails before
        # writing the header, and DuckDB invalidates the database. The next commit checkpoints.
        store._cursor().execute("SET debug_checkpoint_abort = 'before_header'")
        store._cursor().execute("SET checkpoint_threshold = '1B'")
        failing, batch = _batch(10)
        with pytest.raises(StoreUnavailable):
            store.submit(batch).result(timeout=30)
        after, batch = _batch(10)
        store.submit(batch).result(timeout=30)  # refused for good before: "database has been invalidated"
        assert "DuckDB invalidated the database; opening the database again" in caplog.text
        assert store.ping()
        assert len(store.run_events(before)) == 10
        assert len(store.run_events(after)) == 10
        assert {run.run_id for run in store.get_runs([before, after])} == {before, after}
    finally:
        store.close()
    stored = _stored(path)
    assert stored[before] == stored[after] == 10
    # The refused batch's commit had reached the write-ahead log before its checkpoint failed:
    # reopening replayed it (its sender, told to retry, sends it again; event ids deduplicate).
    assert stored[failing] == 10
