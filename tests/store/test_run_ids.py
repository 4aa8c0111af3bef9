"""The filter of run ids the store may hold (store/run_ids.py): a new trace is opened without a
store read only when the filter has certainly never been given its id."""

from __future__ import annotations

import uuid
from pathlib import Path

from detectors.events import RunRow
from dunetrace_sidecar.pipeline import Pipeline
from store.duckdb_store import DuckStore, WriteBatch
from store.run_ids import FIRST_CAPACITY, RunIdFilter


def ids(count: int, seed: int) -> list[str]:
    return [str(uuid.UUID(int=(seed << 96) + i * 7_919)) for i in range(count)]


def test_every_id_given_is_held_across_growing_layers() -> None:
    given = ids(3 * FIRST_CAPACITY + 5, seed=1)  # past the first two layers (64 Ki, 128 Ki)
    run_ids = RunIdFilter()
    run_ids.add_all(given)
    assert all(run_ids.may_hold(run_id) for run_id in given)
    assert len(run_ids._layers) == 3


def test_ids_never_given_are_mostly_refused() -> None:
    run_ids = RunIdFilter()
    run_ids.add_all(ids(100_000, seed=2))
    others = ids(100_000, seed=3)
    false_positives = sum(run_ids.may_hold(run_id) for run_id in others)
    assert false_positives < 1_000  # ~0.24 % per full layer, 1 % is the bound
    assert 150_000 <= run_ids.bytes <= 600_000  # ~2 bytes per id, layers half full at most


def test_an_empty_filter_holds_nothing() -> None:
    assert not any(RunIdFilter().may_hold(run_id) for run_id in ids(1_000, seed=4))


def test_absorbing_another_filter_answers_for_both() -> None:
    ours, scanned = RunIdFilter(), RunIdFilter(capacity=10)
    ours.add_all(ids(500, seed=5))
    scanned.add_all(ids(500, seed=6))
    ours.absorb(scanned)
    assert all(ours.may_hold(run_id) for run_id in ids(500, seed=5) + ids(500, seed=6))
    ours.add_all(ids(500, seed=7))  # new ids still go into a layer of ours
    assert all(ours.may_hold(run_id) for run_id in ids(500, seed=7))


def test_the_daemon_reads_a_large_store_into_one_layer(tmp_path: Path) -> None:
    """The ids stored before startup go into one layer sized from the store's count, not a
    dozen doubling layers each probed on every lookup (``Pipeline._scan_run_ids``)."""
    store = DuckStore(str(tmp_path / "store.duckdb"))
    store.open()
    try:
        stored = ids(3 * FIRST_CAPACITY, seed=8)
        rows = [RunRow(run_id, "agent", None, "completed", 1, 2, 2, 1, 1, 0, 0, 0, 0, 0, None) for run_id in stored]
        store.submit(WriteBatch(runs=rows)).result(timeout=120)
        assert store.run_count() == len(stored)
        pipeline = Pipeline.__new__(Pipeline)  # only what the scan reads
        pipeline._store = store
        pipeline._closing = False
        found = pipeline._scan_run_ids()
    finally:
        store.close()
    assert len(found._layers) == 1
    assert all(found.may_hold(run_id) for run_id in stored)
