"""The store's memory does not grow with the runs it holds.

Until schema 8 the ``runs`` table had a primary key; DuckDB keeps that index (ART) in memory at
~47 bytes per stored run, and the journal's fold loaded it whole, so a store of a few hundred
thousand runs ran a small ``store.memory_limit`` out (a few million at the default 256 MB): the
fold failed and run lookups were refused. Here, under 48 MB, 400,000 runs are written the way the
daemon writes them (each run's row twice, running then completed, folded about every 5,000
rows, with a count read now and then); with the key the folds failed from ~150,000 runs on and
the last lookup was refused.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import duckdb
import pytest

from detectors.events import RunRow
from store.duckdb_store import DuckStore, WriteBatch

RUNS = 400_000
PER_BATCH = 2_000


def _rows(run_ids: list[str], status: str) -> list[RunRow]:
    return [RunRow(run_id, "agent", None, status, 1, 2, 2, 1, 1, 0, 0, 0, 0, 0, None) for run_id in run_ids]


def test_a_small_memory_limit_holds_hundreds_of_thousands_of_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dunetrace.store")
    path = tmp_path / "store.duckdb"
    store = DuckStore(str(path), memory_limit="48MB")
    store.open()
    last: list[str] = []
    try:
        for batch in range(RUNS // PER_BATCH):
            last = [str(uuid.uuid4()) for _ in range(PER_BATCH)]
            store.submit(WriteBatch(runs=_rows(last, "running"))).result(timeout=60)
            store.submit(WriteBatch(runs=_rows(last, "completed"))).result(timeout=60)
            if batch % 20 == 0:  # reads between the writes, as the API and run lookups make them
                assert store.run_count() == (batch + 1) * PER_BATCH
        assert store.run_count() == RUNS
        found = store.get_runs([*last[:50], str(uuid.uuid4())])
        assert sorted(run.run_id for run in found) == sorted(last[:50])
        assert {run.status for run in found} == {"completed"}
    finally:
        store.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    with duckdb.connect(str(path), read_only=True) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT run_id) FROM runs").fetchone() == (RUNS, RUNS)
        assert conn.execute("SELECT count(*) FROM run_journal").fetchone() == (0,)
