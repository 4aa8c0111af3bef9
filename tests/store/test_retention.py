"""store.retention_hours: a run not written for the retention is removed with its events, its
signals and their alert deliveries; a run still being written keeps every event, however old;
0 keeps everything."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from detectors.base import Signal
from detectors.events import RunEvent, RunRow
from store.duckdb_store import Delivery, DuckStore, WriteBatch
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
