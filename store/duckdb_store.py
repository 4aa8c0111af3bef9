"""The embedded store: one DuckDB file, one writer thread, reads on their own cursors.

Writes arrive as ``WriteBatch``es on a bounded queue. The writer drains whatever is queued,
writes it in one transaction (group commit) and only then resolves each batch's future —
the receiver acknowledges an export after that, so an acknowledged export survives kill -9
(DuckDB syncs its write-ahead log on commit and replays it on open).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson

from detectors.base import Signal
from detectors.events import RunEvent, RunRow
from store.migrations import MIGRATIONS

log = logging.getLogger("dunetrace.store")

_STOP = object()
RUN_COLUMNS = (
    "run_id",
    "agent_id",
    "service_name",
    "status",
    "started_ns",
    "ended_ns",
    "last_event_ns",
    "step_count",
    "llm_calls",
    "tool_calls",
    "retrievals",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "exit_reason",
    "updated_ns",
    "source",
)
RUN_SELECT = ", ".join(c for c in RUN_COLUMNS if c != "updated_ns")  # a RunRow's fields, in order
# Run rows are appended to run_journal and folded into runs by the first write after the oldest
# unfolded row is this old, or once the journal is this long; readers see both through runs_now.
# Not more often: each fold scans every stored run, and its hash joins leave ~35 dead entries in
# DuckDB's eviction queues (~240 bytes each, kept until a queue holds 32,768; README "Memory").
FOLD_INTERVAL_S = 5.0
FOLD_ROWS = 5_000
# Up to this many rows a table takes one INSERT ... VALUES; more, an appender. An appender costs
# ~0.5 ms to open and flush whatever it holds; VALUES costs more per row.
SMALL_INSERT_ROWS = 4
# How the writer gets out of a failing store (see ``_recover``): at most one attempt this often.
RECOVERY_INTERVAL_S = 5.0
# Checkpoints tried while memory failures went on before the database is closed and opened again.
CHECKPOINTS_BEFORE_REOPEN = 3
# Expired runs (store.retention_hours) are removed every tenth of the retention, but at least
# this often and at most once a second: the sweep scans every stored run's updated_ns.
RETENTION_SWEEP_MAX_S = 60.0
RETENTION_SWEEP_MIN_S = 1.0
# Runs removed per sweep transaction: a backlog (a store older than the retention, at its first
# start with one) goes in bounded steps, one after another, each a short stop for the writer and
# a small join, instead of one delete that could run store.memory_limit out.
EXPIRE_BATCH_RUNS = 20_000


class StoreUnavailable(RuntimeError):
    """The store cannot take writes right now (transient from the client's point of view)."""


class StoreCorrupt(RuntimeError):
    """The file at store.path opens but cannot be read back or written: refused at startup."""


class BatchRejected(StoreUnavailable):
    """This batch's own values cannot be stored (never will): the others of its group were
    committed without it. Final for the client that sent it, not transient."""


# DuckDB errors raised by values in the rows written, not by the store's state.
_DATA_ERRORS: tuple[type[BaseException], ...] = (
    duckdb.ConversionException,
    duckdb.OutOfRangeException,
    duckdb.InvalidInputException,
    duckdb.ConstraintException,
    duckdb.TypeMismatchException,
    OverflowError,
    ValueError,
    TypeError,
)


SIGNAL_COLUMNS = (
    "signal_id",
    "run_id",
    "agent_id",
    "failure_type",
    "severity",
    "confidence",
    "step_index",
    "evidence",
    "detected_ns",
    "mode",
    "shadow",
)


@dataclass(frozen=True, slots=True)
class FixRecord:
    """A prompt fix the user chose to publish (its text is theirs, not the agent's content)."""

    fix_id: str
    signal_id: str
    failure_type: str
    agent_id: str
    prompt_name: str
    prompt_label: str
    old_version: int
    new_version: int
    fix_content: str
    applied_ns: int
    rolled_back_ns: int | None = None


FIX_COLUMNS = (
    "fix_id",
    "signal_id",
    "failure_type",
    "agent_id",
    "prompt_name",
    "prompt_label",
    "old_version",
    "new_version",
    "fix_content",
    "applied_ns",
    "rolled_back_ns",
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One alert owed: a signal to one destination (the id is stable: receivers dedupe on it)."""

    delivery_id: str
    signal_id: str
    destination: str
    status: str  # pending | sent | failed
    attempts: int
    next_attempt_ns: int
    last_error: str | None
    created_ns: int
    sent_ns: int | None


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    delivery_id: str
    status: str
    attempts: int
    next_attempt_ns: int
    last_error: str | None
    sent_ns: int | None


DELIVERY_COLUMNS = (
    "delivery_id",
    "signal_id",
    "destination",
    "status",
    "attempts",
    "next_attempt_ns",
    "last_error",
    "created_ns",
    "sent_ns",
)


@dataclass(slots=True)
class WriteBatch:
    events: list[RunEvent] = field(default_factory=list)
    runs: list[RunRow] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    fixes: list[FixRecord] = field(default_factory=list)
    rolled_back: list[tuple[str, int]] = field(default_factory=list)  # (fix_id, rolled_back_ns)
    policies_put: list[tuple[int, str]] = field(default_factory=list)  # (id, JSON body)
    policies_deleted: list[int] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)  # new; an existing one is left alone
    delivery_updates: list[DeliveryUpdate] = field(default_factory=list)
    # (run_id, agent_id): the run learnt its agent after signals were stored; they follow it
    relabels: list[tuple[str, str]] = field(default_factory=list)
    deploys: list[tuple[str, str, int, str]] = field(default_factory=list)  # (agent_id, version, ns, meta JSON)
    future: Future[None] = field(default_factory=Future)
    counted: bool = False  # its events are in the store's queue count (until it is answered)


@dataclass(frozen=True, slots=True)
class SignalFilter:
    agent_id: str | None = None
    run_id: str | None = None
    failure_type: str | None = None
    severity: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    include_shadow: bool = False
    # keyset cursor: (detected_ns, signal_id) of the last row of the previous page
    after: tuple[int, str] | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class RunFilter:
    agent_id: str | None = None
    status: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    # keyset cursor: (started_ns, run_id) of the last row of the previous page
    after: tuple[int, str] | None = None
    limit: int = 50


def _payload_json(payload: Any) -> str:
    """Strict JSON (NaN and infinities become null), keys sorted. orjson: a fifth of the stdlib's
    time per event on the write path."""
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


class DuckStore:
    def __init__(
        self,
        path: str,
        max_batch_events: int = 50_000,
        on_write: Callable[[float], None] | None = None,
        memory_limit: str = "256MB",
        retention_s: float = 0.0,
        on_expire: Callable[[int], None] | None = None,
    ) -> None:
        """``on_write(seconds)`` is called from the writer thread after each committed transaction.
        With ``retention_s``, runs quiet for longer are removed with their events, signals and
        alert deliveries (0: kept for ever); ``on_expire(runs)`` is called after each removal."""
        self.path = path
        self._on_write = on_write
        self._on_expire = on_expire
        self._retention_ns = int(retention_s * 1e9)
        self._sweep_interval = min(RETENTION_SWEEP_MAX_S, max(RETENTION_SWEEP_MIN_S, retention_s / 10))
        self._last_sweep = float("-inf")  # monotonic; the first sweep comes with the writer's start
        self._expiry_backlog = False  # the last sweep removed a full batch: the next one is due at once
        self._memory_limit = memory_limit
        self._max_batch_events = max_batch_events
        self._queue: queue.Queue[Any] = queue.Queue()
        self._queued_events = 0
        self._write_failing = False  # the latest write failed for the store's own reasons
        self._lock = threading.Lock()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._thread: threading.Thread | None = None
        self._healthy = False
        self._journal_seq = 0  # the last run_journal seq written
        self._journal_rows = 0  # rows in run_journal since the last fold
        self._journal_since = 0.0  # when the first of them was written (monotonic)
        self._generation = 0  # of the database connection: readers' cursors from an older one are closed
        self._invalidated = False  # DuckDB invalidated the database (a fatal error): it must be opened again
        self._last_recovery = 0.0  # when the writer last took a recovery step (monotonic)
        self._recoveries = 0  # recovery steps in a row, each after an interval with memory failures
        self._memory_failures = 0  # writes and folds that failed for want of memory since the last step

    # --- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = self._connect()
        self._migrate(self._conn)
        self._read_back(self._conn)
        self._fold(self._conn)  # what the last process journaled (a kill -9 leaves it there)
        self._thread = threading.Thread(target=self._writer, name="duckdb-writer", daemon=True)
        self._thread.start()
        self._healthy = True

    def close(self) -> None:
        """Drain every queued batch, checkpoint and close. Idempotent."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self._conn is not None:
            with self._lock:
                cursors, self._cursors = self._cursors, []
            for cursor in cursors:  # readers' connections, so nothing holds a transaction open
                with contextlib.suppress(duckdb.Error):
                    cursor.close()
            try:
                self._fold(self._conn)
                self._conn.execute("CHECKPOINT")
            except duckdb.Error as exc:  # not fatal: the write-ahead log is replayed on the next open
                log.warning("store checkpoint at close skipped: %s", exc)
            finally:
                self._conn.close()
                self._conn = None
        self._healthy = False

    def _connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(
            self.path,
            config={
                "memory_limit": self._memory_limit,
                # Never fetch or load extensions: a wrong file at store.path must not make the
                # daemon reach for the network or run foreign code.
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            },
        )

    @property
    def healthy(self) -> bool:
        return self._healthy and self._thread is not None and self._thread.is_alive()

    @property
    def queued_events(self) -> int:
        return self._queued_events

    @staticmethod
    def _read_back(conn: duckdb.DuckDBPyConnection) -> None:
        """Refuse a file that opens but cannot be read or written: every table is read in full
        (DuckDB verifies each block's checksum; about a second per GB) and a write is tried and
        rolled back, so a corrupted store fails at startup with a clear error instead of failing
        every export later."""
        try:
            for (table,) in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall():
                # Every column of every row: each block's checksum is verified as it is read.
                conn.execute(f'SELECT bit_xor(hash(t)) FROM "{table}" AS t').fetchall()
            conn.execute("BEGIN")
            conn.execute("INSERT INTO events VALUES (gen_random_uuid(), 'probe', 'probe', 0, '', '{}', 0)")
            conn.execute("ROLLBACK")
        except duckdb.Error as exc:
            with contextlib.suppress(duckdb.Error):
                conn.execute("ROLLBACK")
            raise StoreCorrupt(f"the store cannot be read back ({type(exc).__name__}): {exc}") from None

    def _migrate(self, conn: duckdb.DuckDBPyConnection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_ns BIGINT NOT NULL)")
        row = _one(conn, "SELECT coalesce(max(version), 0) FROM schema_version")
        current = int(row[0]) if row else 0
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            conn.execute("BEGIN")
            try:
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", [version, time.time_ns()])
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise
            log.info("store migrated to schema version %d", version)

    @property
    def schema_version(self) -> int:
        row = _one(self._cursor(), "SELECT max(version) FROM schema_version")
        return int(row[0]) if row and row[0] is not None else 0

    # --- writes --------------------------------------------------------------------------

    def submit(self, batch: WriteBatch) -> Future[None]:
        """Queue a batch; its future resolves once it is committed (or fails)."""
        if not self.healthy:
            batch.future.set_exception(StoreUnavailable("store is not open"))
            return batch.future
        with self._lock:
            self._queued_events += len(batch.events)
            batch.counted = True
        self._queue.put(batch)
        return batch.future

    def _writer(self) -> None:
        stop = False
        while not stop:
            # An idle store still expires runs, and works off a backlog without waiting.
            wait = (0.0 if self._expiry_backlog else self._sweep_interval) if self._retention_ns else None
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                if self._conn is not None:
                    self._maybe_expire(self._conn)
                continue
            if item is _STOP:
                break
            conn = self._conn  # None only after a reopen failed (_recover reopens at once)
            if conn is None and time.monotonic() - self._last_recovery >= RECOVERY_INTERVAL_S:
                conn = self._reopen()
            batches: list[WriteBatch] = [item]
            size = len(item.events)
            # Group commit: take what else is already waiting, up to a bound.
            while size < self._max_batch_events:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batches.append(more)
                size += len(more.events)
            if conn is None:  # the database could not be opened again: the next batch tries
                for batch in batches:
                    self._answer(batch, StoreUnavailable("store is reopening"))
                continue
            try:
                self._write(conn, batches)
            except Exception:  # a fault of ours: the writer must outlive it, or every export fails
                log.exception("store writer: unexpected failure")
                for batch in batches:
                    self._answer(batch, StoreUnavailable("store write failed"))
            self._maybe_fold(conn)  # after the batches were answered: it delays no acknowledgement
            self._maybe_expire(conn)
            if self._invalidated or self._memory_failures or self._recoveries:
                self._recover(conn)

    def _recover(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Get out of a database DuckDB invalidated, or of writes and folds failing for memory.

        Under sustained load with a 64 MB ``store.memory_limit`` DuckDB was seen to run out of
        memory it did not free again: commits and the journal's folds failed ("failed to pin
        block", "could not allocate block") for minutes, some writes still passing, or a
        checkpoint failed and DuckDB invalidated the database, which then refuses every statement
        until it is opened again (README "Memory"). So: an invalidated database is closed and
        opened again at once. Memory failures get a checkpoint (it writes what was committed
        since the last one to the file, so it can leave memory) at most every
        RECOVERY_INTERVAL_S, and the reopen when they go on after CHECKPOINTS_BEFORE_REOPEN of
        them; an interval without one ends it. Opening replays the write-ahead log: every commit
        is kept. A full disk gets neither: its writes fail until there is room, reads go on."""
        if self._invalidated:
            self._reopen()
            return
        now = time.monotonic()
        if now - self._last_recovery < RECOVERY_INTERVAL_S:
            return
        self._last_recovery = now
        if not self._memory_failures:
            self._recoveries = 0
            return
        self._memory_failures = 0
        self._recoveries += 1
        if self._recoveries > CHECKPOINTS_BEFORE_REOPEN:
            self._reopen()
            return
        try:
            conn.execute("CHECKPOINT")
        except duckdb.FatalException:
            self._invalidated = True
            self._reopen()
        except duckdb.Error as exc:  # a reader's transaction is open, or the same want of memory
            log.warning("store: checkpoint after memory failures failed (%s)", type(exc).__name__)

    def _reopen(self) -> duckdb.DuckDBPyConnection | None:
        """Close the database (readers' cursors too: DuckDB keeps a database open while any
        connection to it is) and open it again; None when it cannot be opened now."""
        log.error(
            "store: %s; opening the database again",
            "DuckDB invalidated the database" if self._invalidated else "memory failures go on",
        )
        with self._lock:
            cursors, self._cursors = self._cursors, []
            self._generation += 1
            old, self._conn = self._conn, None
        for cursor in cursors:
            with contextlib.suppress(duckdb.Error):
                cursor.close()
        if old is not None:
            with contextlib.suppress(duckdb.Error):
                old.close()
        try:
            conn = self._connect()  # the journal is folded by the writer's next write, as ever
        except duckdb.Error as exc:
            self._last_recovery = time.monotonic()
            log.error(
                "store: could not open the database again (%s); tried again in %.0f s",
                type(exc).__name__,
                RECOVERY_INTERVAL_S,
            )
            return None
        self._invalidated = False
        self._recoveries = self._memory_failures = 0
        self._last_recovery = time.monotonic()
        self._conn = conn
        return conn

    def _transaction(self, conn: duckdb.DuckDBPyConnection, batches: Sequence[WriteBatch]) -> None:
        """Write ``batches`` in one transaction; rolled back and raised on any failure.

        Signals are inserted, not upserted: a signal is new when it is raised, and an upsert costs
        a few milliseconds more per transaction. One stored before (a client's retry of an export
        whose commit it never heard of) breaks the insert, and the transaction is written again
        with the upsert."""
        try:
            self._write_once(conn, batches, upsert_signals=False)
        except duckdb.ConstraintException:
            self._write_once(conn, batches, upsert_signals=True)

    def _write_once(self, conn: duckdb.DuckDBPyConnection, batches: Sequence[WriteBatch], upsert_signals: bool) -> None:
        now_ns = time.time_ns()
        runs: dict[str, RunRow] = {}
        for batch in batches:
            for row in batch.runs:
                runs[row.run_id] = row  # later batches carry the newer summary
        try:
            conn.execute("BEGIN")
            events = [
                (e.run_id, e.event_id, e.kind, e.ts_ns, e.call_id, _payload_json(e.payload), now_ns)
                for batch in batches
                for e in batch.events
            ]
            _insert(conn, "events", events)
            signals = [
                (
                    s.signal_id,
                    s.run_id,
                    s.agent_id,
                    s.failure_type,
                    s.severity,
                    s.confidence,
                    s.step_index,
                    _payload_json(s.evidence),
                    s.detected_ns,
                    s.mode,
                    s.shadow,
                )
                for batch in batches
                for s in batch.signals
            ]
            if signals and upsert_signals:
                # The id is derived from run and type: an upsert can only rewrite the same signal.
                appender = conn.appender("signals", action="upsert")
                appender.append_rows(signals)
                appender.flush()
            else:
                _insert(conn, "signals", signals)  # a few (the usual count) by INSERT ... VALUES
            for batch in batches:
                for run_id, agent_id in batch.relabels:
                    conn.execute("UPDATE signals SET agent_id = ? WHERE run_id = ?", [agent_id, run_id])
                for fix in batch.fixes:
                    placeholders = ", ".join("?" for _ in FIX_COLUMNS)
                    conn.execute(
                        f"INSERT INTO fixes ({', '.join(FIX_COLUMNS)}) VALUES ({placeholders})",
                        [getattr(fix, c) for c in FIX_COLUMNS],
                    )
                for fix_id, rolled_back_ns in batch.rolled_back:
                    conn.execute("UPDATE fixes SET rolled_back_ns = ? WHERE fix_id = ?", [rolled_back_ns, fix_id])
                for policy_id, body in batch.policies_put:
                    conn.execute("INSERT OR REPLACE INTO policies VALUES (?, ?, ?)", [policy_id, body, time.time_ns()])
                for deploy in batch.deploys:
                    conn.execute("INSERT INTO deploys VALUES (?, ?, ?, ?)", list(deploy))
                for policy_id in batch.policies_deleted:
                    conn.execute("DELETE FROM policies WHERE id = ?", [policy_id])
                for delivery in batch.deliveries:
                    conn.execute(
                        f"INSERT INTO deliveries VALUES ({', '.join('?' for _ in DELIVERY_COLUMNS)}) "
                        "ON CONFLICT DO NOTHING",
                        [getattr(delivery, c) for c in DELIVERY_COLUMNS],
                    )
                for update in batch.delivery_updates:
                    conn.execute(
                        "UPDATE deliveries SET status = ?, attempts = ?, next_attempt_ns = ?, last_error = ?,"
                        " sent_ns = ? WHERE delivery_id = ?",
                        [
                            update.status,
                            update.attempts,
                            update.next_attempt_ns,
                            update.last_error,
                            update.sent_ns,
                            update.delivery_id,
                        ],
                    )
            if runs:
                seq = self._journal_seq + 1
                _insert(
                    conn,
                    "run_journal",
                    [
                        (
                            seq,
                            r.run_id,
                            r.agent_id,
                            r.service_name,
                            r.status,
                            r.started_ns,
                            r.ended_ns,
                            r.last_event_ns,
                            r.step_count,
                            r.llm_calls,
                            r.tool_calls,
                            r.retrievals,
                            r.errors,
                            r.prompt_tokens,
                            r.completion_tokens,
                            r.exit_reason,
                            now_ns,
                            r.source,
                        )
                        for r in runs.values()
                    ],
                )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                conn.execute("ROLLBACK")
            raise
        if runs:
            self._journal_seq += 1
            if not self._journal_rows:
                self._journal_since = time.monotonic()
            self._journal_rows += len(runs)

    def _fold(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Journaled run rows into ``runs`` (each run's latest), and the journal emptied, in one
        transaction: readers see the same rows through ``runs_now`` before and after."""
        columns = ", ".join(RUN_COLUMNS)
        try:
            conn.execute("BEGIN")
            # No key on runs (its index grew with the store, in memory): a run's old row goes and
            # its latest comes in, in this transaction.
            conn.execute("DELETE FROM runs WHERE run_id IN (SELECT run_id FROM run_journal)")
            conn.execute(
                f"INSERT INTO runs ({columns}) SELECT {columns} FROM run_journal"
                " QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY seq DESC) = 1"
            )
            conn.execute("DELETE FROM run_journal")
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                conn.execute("ROLLBACK")
            raise
        self._journal_rows = 0

    def _maybe_fold(self, conn: duckdb.DuckDBPyConnection) -> None:
        if not self._journal_rows:
            return
        if self._journal_rows < FOLD_ROWS and time.monotonic() - self._journal_since < FOLD_INTERVAL_S:
            return
        try:
            self._fold(conn)
        except duckdb.Error as exc:  # readers still see every row through runs_now; tried again later
            log.warning("store: folding the run journal failed (%s); will retry", type(exc).__name__)
            self._journal_since = time.monotonic()
            self._note_failure(exc)

    def _note_failure(self, exc: Exception) -> None:
        """What ``_recover`` acts on: a want of memory, or a database DuckDB invalidated."""
        self._memory_failures += int(out_of_memory(exc))
        self._invalidated = self._invalidated or isinstance(exc, duckdb.FatalException)

    def _maybe_expire(self, conn: duckdb.DuckDBPyConnection) -> None:
        if not self._retention_ns:
            return
        if not self._expiry_backlog and time.monotonic() - self._last_sweep < self._sweep_interval:
            return
        self._last_sweep = time.monotonic()
        try:
            if self._journal_rows:
                self._fold(conn)  # so runs holds every run's latest row, the one the sweep judges
            removed = self._expire(conn, time.time_ns() - self._retention_ns)
        except duckdb.Error as exc:  # tried again at the next sweep; nothing was removed
            self._expiry_backlog = False  # not at once: a failing store would be asked in a busy loop
            log.warning("store: removing expired runs failed (%s); will retry", type(exc).__name__)
            self._note_failure(exc)
            return
        self._expiry_backlog = removed == EXPIRE_BATCH_RUNS
        if removed:
            log.info("store: removed %d run(s) quiet for longer than store.retention_hours", removed)
            if self._on_expire is not None:
                self._on_expire(removed)

    def _expire(self, conn: duckdb.DuckDBPyConnection, cutoff_ns: int) -> int:
        """Remove up to EXPIRE_BATCH_RUNS runs last written before ``cutoff_ns`` (daemon time)
        with their events, signals and those signals' alert deliveries, in one transaction; the
        number of runs removed.

        A run's events are committed with its row (``updated_ns``), so they were all ingested
        before its last update: the ``ingested_ns`` bound lets DuckDB skip every newer row group
        by its min/max, and a run still being written keeps all of its events, however old."""
        try:
            conn.execute("BEGIN")
            found = conn.execute(
                "SELECT run_id FROM runs WHERE updated_ns < ? LIMIT ?", [cutoff_ns, EXPIRE_BATCH_RUNS]
            ).fetchall()
            if not found:
                conn.execute("ROLLBACK")
                return 0
            expired = "SELECT unnest($ids::UUID[])"
            ids = {"ids": [str(run_id) for (run_id,) in found]}
            their_signals = f"SELECT signal_id FROM signals WHERE run_id IN ({expired})"
            conn.execute(f"DELETE FROM deliveries WHERE signal_id IN ({their_signals})", ids)
            conn.execute(f"DELETE FROM signals WHERE run_id IN ({expired})", ids)
            events = f"DELETE FROM events WHERE ingested_ns < $cutoff AND run_id IN ({expired})"
            conn.execute(events, {**ids, "cutoff": cutoff_ns})
            conn.execute(f"DELETE FROM runs WHERE run_id IN ({expired})", ids)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                conn.execute("ROLLBACK")
            raise
        return len(found)

    def _write(self, conn: duckdb.DuckDBPyConnection, batches: Sequence[WriteBatch]) -> None:
        """Group commit; when the group fails, each batch is committed on its own, so a batch
        whose values cannot be stored fails alone and never costs other clients their export."""
        started = time.perf_counter()
        try:
            self._transaction(conn, batches)
        except Exception as exc:
            if len(batches) == 1:
                self._fail(batch=batches[0], exc=exc)
                return
            log.warning(
                "group commit of %d batches failed (%s); committing them one by one", len(batches), type(exc).__name__
            )
            for batch in batches:
                try:
                    self._transaction(conn, [batch])
                except Exception as one:
                    self._fail(batch=batch, exc=one)
                else:
                    self._write_failing = False
                    self._answer(batch)
            return
        self._write_failing = False
        if self._on_write is not None:
            self._on_write(time.perf_counter() - started)
        for batch in batches:
            self._answer(batch)

    def _answer(self, batch: WriteBatch, error: Exception | None = None) -> None:
        """A batch leaves the queue count before its waiter hears the answer: a client that
        sends its next export on an acknowledgement must not be refused for its own last one
        (nor for the journal fold that may follow it)."""
        with self._lock:
            if batch.counted:  # once: a writer fault may answer a batch answered already
                self._queued_events -= len(batch.events)
                batch.counted = False
        _settle(batch.future, error)

    def _fail(self, batch: WriteBatch, exc: Exception) -> None:
        if isinstance(exc, _DATA_ERRORS):
            log.warning("store refused a batch's values: %s", type(exc).__name__)
            self._answer(batch, BatchRejected(f"values that cannot be stored ({type(exc).__name__})"))
        else:
            self._write_failing = True
            self._note_failure(exc)
            log.error("store write failed: %s", type(exc).__name__)
            log.debug("store write failure", exc_info=exc)
            self._answer(batch, StoreUnavailable(f"store write failed: {type(exc).__name__}"))

    # --- reads (any thread; one cursor per thread) ----------------------------------------

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None or self._local.generation != self._generation:
            with self._lock:
                if self._conn is None:
                    raise StoreUnavailable("store is not open")
                cursor = self._conn.cursor()
                self._cursors.append(cursor)
                self._local.cursor, self._local.generation = cursor, self._generation
        return cursor

    def memory_bytes(self) -> int:
        """What DuckDB holds in memory by its own accounting (buffer cache, indexes); bounded by
        store.memory_limit. 0 when the store cannot answer."""
        try:
            row = _one(self._cursor(), "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory()")
        except (duckdb.Error, StoreUnavailable):
            return 0
        return int(row[0]) if row else 0

    def ping(self) -> bool:
        """Ready: open, answering, and its last write did not fail for the store's own reasons
        (a full disk, I/O errors) — readiness follows what exports are being answered."""
        try:
            _one(self._cursor(), "SELECT 1")
            return self.healthy and not self._write_failing
        except (duckdb.Error, StoreUnavailable):
            return False

    def list_runs(self, flt: RunFilter) -> list[RunRow]:
        # A trace is listed once it has a step (content from log records may come first).
        # A trace with no step is no agent run (a web request's spans), unless the SDK opened it
        where: list[str] = ["(step_count > 0 OR source = 'sdk')"]
        params: list[Any] = []
        if flt.agent_id is not None:
            where.append("agent_id = ?")
            params.append(flt.agent_id)
        if flt.status is not None:
            where.append("status = ?")
            params.append(flt.status)
        windowed = flt.agent_id is None and flt.status is None
        rows = self._page(RUN_SELECT, "runs_now", where, params, "started_ns", "run_id::VARCHAR", flt, windowed)
        return [_run_row(r) for r in rows]

    def _page(
        self,
        columns: str,
        source: str,
        where: list[str],
        params: list[Any],
        time_column: str,
        id_column: str,
        flt: RunFilter | SignalFilter,
        windowed: bool,
    ) -> list[Any]:
        """Newest first by ``time_column``, a keyset page after ``flt.after`` = (time, id).

        Newest first is a top-N over every matching row unless the scan can skip rows: they are
        stored about in time order, so a lower time bound lets DuckDB skip all but the newest
        row groups (~2 ms instead of ~12 over 100,000 runs). The page is asked for within a
        window before its upper end sized from the store's average rate, then 24 and 576 times
        that, then without a bound; a bounded answer with a full page is the page (every row
        outside the bound is older than all in it). Only ``windowed`` pages (no filter but time):
        a filter on other columns makes the top-N small already, and the windows miss more."""
        if flt.since_ns is not None:
            where.append(f"{time_column} >= ?")
            params.append(flt.since_ns)
        if flt.until_ns is not None:
            where.append(f"{time_column} < ?")
            params.append(flt.until_ns)
        if flt.after is not None:
            where.append(f"({time_column}, {id_column}) < (?, ?)")
            params.extend(flt.after)
        cursor = self._cursor()
        stats_sql = f"SELECT count(*), min({time_column}), max({time_column}) FROM {source}"
        stats = _one(cursor, stats_sql) if windowed else None
        count, oldest, newest = stats if stats else (0, None, None)
        upper = flt.after[0] if flt.after is not None else flt.until_ns if flt.until_ns is not None else newest
        windows: list[int | None] = [None]
        if count and oldest is not None and newest is not None and upper is not None:
            # wide enough for four pages at the store's average rate; then 24 times wider, twice
            first = max(10**9, (newest - oldest) * flt.limit * 4 // count)
            windows = [first, first * 24, first * 24 * 24, None]
        order = f" ORDER BY {time_column} DESC, {id_column} DESC LIMIT ?"
        for window in windows:
            lower = upper - window if window is not None and upper is not None else None
            if lower is not None and flt.since_ns is not None and flt.since_ns >= lower:
                continue  # since bounds it as tightly
            conditions = where if lower is None else [*where, f"{time_column} >= ?"]
            sql = f"SELECT {columns} FROM {source}" + (" WHERE " + " AND ".join(conditions) if conditions else "")
            args = params if lower is None else [*params, lower]
            rows = cursor.execute(sql + order, [*args, flt.limit]).fetchall()
            if lower is None or len(rows) >= flt.limit:
                return rows
        raise AssertionError("the unbounded try always answers")

    def get_run(self, run_id: str) -> RunRow | None:
        rows = self.get_runs([run_id])
        return rows[0] if rows else None

    def get_runs(self, run_ids: Iterable[str]) -> list[RunRow]:
        ids = list(run_ids)
        if not ids:
            return []
        sql = f"SELECT {RUN_SELECT} FROM runs_now WHERE run_id IN (SELECT unnest(?::UUID[]))"
        return [_run_row(r) for r in self._cursor().execute(sql, [ids]).fetchall()]

    def run_count(self) -> int:
        row = _one(self._cursor(), "SELECT count(*) FROM runs_now")
        return int(row[0]) if row else 0

    def run_id_batches(self, size: int = 65_536) -> Iterator[list[str]]:
        """Every run id stored (canonical UUID strings, as the pipeline names runs), in batches.
        Read it to the end: until then the cursor's transaction stays open (see ``_one``)."""
        result = self._cursor().execute("SELECT run_id::VARCHAR FROM runs_now")
        while rows := result.fetchmany(size):
            yield [row[0] for row in rows]

    def run_events(self, run_id: str) -> list[RunEvent]:
        rows = (
            self._cursor()
            .execute(
                "SELECT run_id, event_id, kind, ts_ns, call_id, payload FROM events WHERE run_id = ?::UUID",
                [run_id],
            )
            .fetchall()
        )
        return [RunEvent(str(r[0]), r[1], r[2], r[3], r[4], orjson.loads(r[5])) for r in rows]

    def list_agents(self, since_ns: int | None = None) -> list[dict[str, Any]]:
        """Agents with runs (of at least one step) or a deploy marker, with their latest deploy.

        With ``since_ns`` the counts cover runs started and signals detected at or after it (the
        dashboard's window); an agent quiet in the window is still listed, with zero counts, and
        ``last_seen`` is always its latest event.
        """
        since = since_ns if since_ns is not None else -(2**63)
        rows = (
            self._cursor()
            .execute(
                "WITH r AS (SELECT agent_id, count(*) FILTER (WHERE started_ns >= $since) AS run_count,"
                "             max(last_event_ns) AS last_seen_ns,"
                "             count(*) FILTER (WHERE status = 'running') AS running,"
                "             count(*) FILTER (WHERE started_ns >= $since AND (status = 'errored'"
                "                 OR run_id IN (SELECT run_id FROM signals WHERE NOT shadow))) AS failed FROM runs_now"
                "             WHERE step_count > 0 OR source = 'sdk'"
                "             GROUP BY agent_id),"
                "     s AS (SELECT agent_id, count(*) AS signal_count FROM signals"
                "             WHERE NOT shadow AND detected_ns >= $since GROUP BY agent_id),"
                "     d AS (SELECT agent_id, arg_max(version, deployed_ns) AS version, max(deployed_ns) AS deployed_ns"
                "             FROM deploys GROUP BY agent_id)"
                " SELECT agent_id, coalesce(r.run_count, 0), r.last_seen_ns, coalesce(r.running, 0),"
                "        coalesce(s.signal_count, 0), d.version, d.deployed_ns, coalesce(r.failed, 0)"
                " FROM r FULL OUTER JOIN d USING (agent_id) LEFT JOIN s USING (agent_id)"
                " ORDER BY agent_id",
                {"since": since},
            )
            .fetchall()
        )
        return [
            {
                "agent_id": r[0],
                "run_count": r[1],
                "last_seen_ns": r[2],
                "running_runs": r[3],
                "signal_count": r[4],
                "deploy_version": r[5],
                "deployed_ns": r[6],
                "failed_runs": r[7],
            }
            for r in rows
        ]

    def recent_completed_steps(self, agent_id: str, limit: int) -> list[int]:
        """Step counts of the agent's latest completed runs, newest first (the inflation baseline)."""
        rows = (
            self._cursor()
            .execute(
                "SELECT step_count FROM runs_now WHERE agent_id = ? AND status = 'completed' AND step_count > 0"
                " ORDER BY ended_ns DESC LIMIT ?",
                [agent_id, limit],
            )
            .fetchall()
        )
        return [int(r[0]) for r in rows]

    def list_signals(self, flt: SignalFilter) -> list[Signal]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("agent_id", flt.agent_id),
            ("failure_type", flt.failure_type),
            ("severity", flt.severity),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if flt.run_id is not None:
            where.append("run_id = ?::UUID")
            params.append(flt.run_id)
        if not flt.include_shadow:
            where.append("NOT shadow")
        windowed = flt.agent_id is None and flt.failure_type is None and flt.severity is None and flt.run_id is None
        columns = ", ".join(SIGNAL_COLUMNS)
        rows = self._page(columns, "signals", where, params, "detected_ns", "signal_id", flt, windowed)
        return [_signal(r) for r in rows]

    def get_signal(self, signal_id: str) -> Signal | None:
        sql = f"SELECT {', '.join(SIGNAL_COLUMNS)} FROM signals WHERE signal_id = ?"
        rows = self._cursor().execute(sql, [signal_id]).fetchall()
        return _signal(rows[0]) if rows else None

    def due_deliveries(self, now_ns: int, limit: int) -> list[Delivery]:
        sql = (
            f"SELECT {', '.join(DELIVERY_COLUMNS)} FROM deliveries WHERE status = 'pending' AND next_attempt_ns <= ?"
            " ORDER BY next_attempt_ns LIMIT ?"
        )
        return [Delivery(*r) for r in self._cursor().execute(sql, [now_ns, limit]).fetchall()]

    def deliveries_of(self, signal_id: str) -> list[Delivery]:
        sql = f"SELECT {', '.join(DELIVERY_COLUMNS)} FROM deliveries WHERE signal_id = ? ORDER BY destination"
        return [Delivery(*r) for r in self._cursor().execute(sql, [signal_id]).fetchall()]

    def load_policies(self) -> list[dict[str, Any]]:
        rows = self._cursor().execute("SELECT body FROM policies ORDER BY id").fetchall()
        return [orjson.loads(r[0]) for r in rows]

    # --- fixes ---------------------------------------------------------------------------------

    def fixes_for_signal(self, signal_id: str) -> list[FixRecord]:
        sql = f"SELECT {', '.join(FIX_COLUMNS)} FROM fixes WHERE signal_id = ? ORDER BY applied_ns DESC"
        return [FixRecord(*r) for r in self._cursor().execute(sql, [signal_id]).fetchall()]

    def fix_outcome(self, fix: FixRecord) -> dict[str, int]:
        """Runs of the fixed agent started since the fix, the failure's recurrences on them, and
        how many of them ran a generation on the new prompt version."""
        row = _one(
            self._cursor(),
            """
                WITH after AS (
                    SELECT run_id FROM runs_now WHERE agent_id = ? AND started_ns >= ?
                )
                SELECT
                    (SELECT count(*) FROM after),
                    (SELECT count(DISTINCT s.run_id) FROM signals s
                       WHERE s.failure_type = ? AND s.run_id IN (SELECT run_id FROM after)),
                    (SELECT count(DISTINCT e.run_id) FROM events e
                       WHERE e.kind = 'llm.called' AND e.run_id IN (SELECT run_id FROM after)
                         AND json_extract_string(e.payload, '$.langfuse_prompt_name') = ?
                         AND TRY_CAST(json_extract_string(e.payload, '$.langfuse_prompt_version') AS BIGINT) = ?)
                """,
            [fix.agent_id, fix.applied_ns, fix.failure_type, fix.prompt_name, fix.new_version],
        )
        assert row is not None
        return {"runs_after_fix": row[0], "recurrences_after_fix": row[1], "adopted_runs": row[2]}

    def run_signals(self, run_id: str) -> list[Signal]:
        sql = f"SELECT {', '.join(SIGNAL_COLUMNS)} FROM signals WHERE run_id = ?::UUID ORDER BY step_index, detected_ns"
        return [_signal(r) for r in self._cursor().execute(sql, [run_id]).fetchall()]


def _signal(r: Sequence[Any]) -> Signal:
    return Signal(
        signal_id=r[0],
        run_id=str(r[1]),
        agent_id=r[2],
        failure_type=r[3],
        severity=r[4],
        confidence=r[5],
        step_index=r[6],
        evidence=orjson.loads(r[7]),
        detected_ns=r[8],
        mode=r[9],
        shadow=r[10],
    )


def out_of_memory(exc: BaseException) -> bool:
    """DuckDB ran out of memory: raised as such, or inside the error of the commit it failed."""
    if isinstance(exc, duckdb.OutOfMemoryException):
        return True
    text = str(exc)
    return "failed to pin block" in text or "could not allocate block" in text or "Out of Memory" in text


def _one(cursor: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> tuple[Any, ...] | None:
    """The first row of ``sql``, its result read to the end. DuckDB ends an autocommit query's
    transaction only once its result is exhausted, and while any transaction is open it keeps
    the row versions committed since (a fold's deleted runs rows, its undo buffers) and cannot
    vacuum deleted rows: a reader's ``fetchone()`` left its cursor's transaction open until that
    thread's next query, and the daemon's memory and file grew under load (README "Memory")."""
    rows = cursor.execute(sql, params).fetchall()
    return rows[0] if rows else None


def _insert(conn: duckdb.DuckDBPyConnection, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows appended to ``table``: a few by one INSERT ... VALUES, more by an appender."""
    if not rows:
        return
    if len(rows) <= SMALL_INSERT_ROWS:
        values = "(" + ", ".join("?" * len(rows[0])) + ")"
        conn.execute(f"INSERT INTO {table} VALUES " + ", ".join([values] * len(rows)), [v for r in rows for v in r])
        return
    appender = conn.appender(table)
    appender.append_rows(rows)
    appender.flush()


def _settle(future: Future[None], error: Exception | None = None) -> None:
    """Tell a batch's waiter how its write went. A waiter that gave up (a gRPC deadline cancels
    the export's handler, and with it this future) is told nothing; its batch stays written, as
    the run's state in memory already counts it."""
    try:
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
    except InvalidStateError:
        pass


def _run_row(r: Sequence[Any]) -> RunRow:
    return RunRow(
        run_id=str(r[0]),
        agent_id=r[1],
        service_name=r[2],
        status=r[3],
        started_ns=r[4],
        ended_ns=r[5],
        last_event_ns=r[6],
        step_count=r[7],
        llm_calls=r[8],
        tool_calls=r[9],
        retrievals=r[10],
        errors=r[11],
        prompt_tokens=r[12],
        completion_tokens=r[13],
        exit_reason=r[14],
        source=r[15],
    )
