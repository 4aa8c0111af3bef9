"""store.retention_hours: a run not written for the retention is removed with its events, its
signals and their alert deliveries; a run still being written keeps every event, however old;
0 keeps everything; the freed space is used again."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from detectors.base import Signal
from detectors.events import RunEvent, RunRow
from store.duckdb_store import EXPIRE_BATCH_RUNS, Delivery, DuckStore, WriteBatch
from tests.sidecar import wait_for

TS = 1_700_000_000_000_000_000  # span times: the sweep judges the daemon's write time, not these


def _write(store: DuckStore, run_id: str, events: int, with_signal: bool = False) -> str:
    """``events`` new events of ``run_id`` with its row (and a signal owed to one destination)."""
    row = RunRow(run_id, "agent", None, "running", TS, None, TS, events, 0, events, 0, 0, 0, 0, None)
    batch = WriteBatch(
        events=[
            RunEvent(run_id, f"{run_id}:{uuid.uuid4().hex}", "tool.called", TS + i, f"c{i}", {"tool": "search"})
            for i in range(events)
        ],
        runs=[row],
    )
    signal_id = f"{run_id}:TOOL_LOOP"
    if with_signal:
        batch.signals.append(Signal(signal_id, run_id, "agent", "TOOL_LOOP", "HIGH", 0.9, 3, {}, TS, "live", False))
        batch.deliveries.append(Delivery(f"d-{run_id}", signal_id, "webhook", "pending", 0, TS, None, TS, None))
    store.submit(batch).result(timeout=30)
    return signal_id


def test_a_quiet_run_goes_with_its_events_signals_and_deliveries(tmp_path: Path) -> None:
    store = DuckStore(str(tmp_path / "store.duckdb"), retention_s=2.0)
    store.open()
    try:
        quiet, busy = str(uuid.uuid4()), str(uuid.uuid4())
        signal_id = _write(store, quiet, 5, with_signal=True)
        _write(store, busy, 5, with_signal=True)
        assert store.get_signal(signal_id) is not None and store.deliveries_of(signal_id)

        # The busy run keeps being written (its first events grow older than the retention);
        # the quiet one is not written again.
        written = 5
        deadline = time.monotonic() + 30
        while store.get_run(quiet) is not None:
            assert time.monotonic() < deadline, "the quiet run was never removed"
            _write(store, busy, 1)
            written += 1
            time.sleep(0.2)

        assert store.run_events(quiet) == []
        assert store.get_signal(signal_id) is None
        assert store.deliveries_of(signal_id) == []
        assert store.run_signals(quiet) == []
        kept = store.get_run(busy)
        assert kept is not None
        assert len(store.run_events(busy)) == written  # the oldest ones too
        assert [s.failure_type for s in store.run_signals(busy)] == ["TOOL_LOOP"]
        assert store.deliveries_of(f"{busy}:TOOL_LOOP")
    finally:
        store.close()


def test_an_idle_store_still_removes_expired_runs(tmp_path: Path) -> None:
    store = DuckStore(str(tmp_path / "store.duckdb"), retention_s=1.0)
    store.open()
    try:
        run_id = str(uuid.uuid4())
        _write(store, run_id, 3)
        # nothing else is written: the writer's own schedule must remove it
        wait_for(lambda: store.get_run(run_id) is None, timeout=15, what="the run's removal")
        assert store.run_events(run_id) == []
    finally:
        store.close()


def test_zero_retention_keeps_everything(tmp_path: Path) -> None:
    store = DuckStore(str(tmp_path / "store.duckdb"), retention_s=0.0)
    store.open()
    try:
        old = str(uuid.uuid4())
        signal_id = _write(store, old, 3, with_signal=True)
        time.sleep(1.5)  # longer than the shortest sweep interval
        _write(store, str(uuid.uuid4()), 3)  # a write, after which a sweep would run
        time.sleep(0.5)
        assert store.get_run(old) is not None
        assert len(store.run_events(old)) == 3
        assert store.get_signal(signal_id) is not None
    finally:
        store.close()


def _read_in_a_thread_of_its_own(read: Callable[[], object]) -> None:
    """As the daemon reads: from a pool thread, whose cursor then waits for its next query."""
    thread = threading.Thread(target=read)
    thread.start()
    thread.join()


def test_removed_runs_leave_the_file_room_for_new_ones(tmp_path: Path) -> None:
    """Each round writes ~80,000 events and waits for them to expire, with the reads the daemon
    makes between (readiness, the memory gauge, counts). DuckDB uses the space of removed rows
    again only once no transaction is left open from before their removal: a reader that left
    its result unread kept one open, and the file grew by a round's data every other round
    (5 to 29 MB in 9 rounds; 5-10 MB now)."""
    path = tmp_path / "store.duckdb"
    store = DuckStore(str(path), retention_s=1.0)
    store.open()
    sizes = []
    try:
        for _ in range(9):
            for _ in range(40):
                _write(store, str(uuid.uuid4()), 2000)
            for read in (store.ping, store.memory_bytes, store.run_count, lambda: store.schema_version):
                _read_in_a_thread_of_its_own(read)
            wait_for(lambda: store.run_count() == 0, timeout=30, what="the round's removal")
            sizes.append(os.path.getsize(path))
    finally:
        store.close()
    assert max(sizes[-4:]) <= 1.5 * max(sizes[:4]), [size // 2**20 for size in sizes]


def test_a_backlog_of_expired_runs_goes_in_bounded_batches(tmp_path: Path) -> None:
    """A store older than its retention (its first start with one) is worked off in transactions
    of EXPIRE_BATCH_RUNS runs each, not in one delete of everything."""
    removed: list[int] = []
    store = DuckStore(str(tmp_path / "store.duckdb"), retention_s=3.0, on_expire=removed.append)
    store.open()
    try:
        total = 2 * EXPIRE_BATCH_RUNS + 5_000
        batch = WriteBatch()  # one transaction: they all expire at once
        for _ in range(total):
            run_id = str(uuid.uuid4())
            batch.runs.append(RunRow(run_id, "agent", None, "completed", TS, TS, TS, 1, 0, 1, 0, 0, 0, 0, None))
            batch.events.append(RunEvent(run_id, f"{run_id}:0", "tool.called", TS, "c0", {}))
        store.submit(batch).result(timeout=60)
        assert store.run_count() == total
        wait_for(lambda: store.run_count() == 0, timeout=60, what="the backlog's removal")
        assert removed == [EXPIRE_BATCH_RUNS, EXPIRE_BATCH_RUNS, 5_000]
    finally:
        store.close()
