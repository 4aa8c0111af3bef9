"""The store's queue count (what backpressure refuses on) drops before a batch's waiter hears
its answer: a client that sends its next export on an acknowledgement is never refused for its
own previous one. CI once saw exactly that: a client honouring Retry-After sent its retries one
by one to a daemon allowing one queued event and got 503 after an acknowledged export."""

from __future__ import annotations

import uuid
from concurrent.futures import Future
from pathlib import Path

from detectors.events import RunEvent, RunRow
from store.duckdb_store import BatchRejected, DuckStore, WriteBatch


def _batch(ts_ns: int, events: int = 3) -> WriteBatch:
    run_id = str(uuid.uuid4())
    row = RunRow(run_id, "agent", None, "running", 1, None, 1, 1, 1, 0, 0, 0, 0, 0, None)
    return WriteBatch(
        events=[RunEvent(run_id, f"{run_id}:{i}", "llm.called", ts_ns, f"c{i}", {}) for i in range(events)],
        runs=[row],
    )


def _count_at_answer(store: DuckStore, future: Future[None], seen: list[int]) -> None:
    # Done callbacks run in the thread that settles the future, at the moment it is settled.
    future.add_done_callback(lambda _: seen.append(store.queued_events))


def test_a_committed_batch_has_left_the_count_when_its_waiter_hears(tmp_path: Path) -> None:
    store = DuckStore(str(tmp_path / "store.duckdb"))
    store.open()
    try:
        seen: list[int] = []
        for _ in range(20):  # one at a time, like a client waiting for each acknowledgement
            batch = _batch(1_700_000_000_000_000_000)
            future = store.submit(batch)
            _count_at_answer(store, future, seen)
            future.result(timeout=30)
        assert seen == [0] * 20
        assert store.queued_events == 0
    finally:
        store.close()


def test_refused_and_committed_batches_of_a_group_each_leave_the_count_once(tmp_path: Path) -> None:
    store = DuckStore(str(tmp_path / "store.duckdb"))
    store.open()
    try:
        seen: list[int] = []
        futures = []
        for index in range(100):  # faster than one commit: they share group commits
            ts = 2**64 if index == 50 else 1_700_000_000_000_000_000 + index  # 2^64: no BIGINT holds it
            future = store.submit(_batch(ts))
            _count_at_answer(store, future, seen)
            futures.append(future)
        outcomes = []
        for future in futures:
            try:
                future.result(timeout=30)
                outcomes.append("ok")
            except BatchRejected:
                outcomes.append("rejected")
        assert outcomes.count("rejected") == 1
        assert store.queued_events == 0  # each batch's 3 events taken off once, no more, no less
        # When the k-th answer (counting from 0) is heard, at most the 99 - k unanswered batches
        # are still counted, never the answered one.
        assert all(count <= 3 * (99 - k) for k, count in enumerate(seen)), seen
    finally:
        store.close()
