"""The pipeline: decoded OTLP → run events (receiver) → durable store, with open-run state.

Runs on the event loop thread. Each export is translated, applied to the states of its runs
and written as one ``WriteBatch``; the call returns only when that batch is committed.
If the write fails, the runs it touched are dropped from memory and rebuilt from the store
on their next span, so a client's retry is applied again rather than deduplicated away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as pb_logs_service
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb_metrics_service
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb_trace_service

from detectors.events import RunEvent, RunRow
from receiver.assemble import TERMINAL_STATUSES, RunState
from receiver.content import Hasher
from receiver.errors import QUEUE_FULL, SHUTTING_DOWN, STORE_UNAVAILABLE, ReceiverError
from receiver.ingest import ExportResult
from receiver.spans import SpanFacts, translate_logs, translate_request
from store.duckdb_store import DuckStore, StoreUnavailable, WriteBatch

log = logging.getLogger("dunetrace.pipeline")


@dataclass
class PipelineStats:
    """Counters the metrics issue will expose; kept here so nothing is lost until then."""

    spans_received: int = 0
    spans_rejected: int = 0
    spans_unused: int = 0  # spans of no GenAI kind
    log_records_dropped: int = 0
    metric_points_dropped: int = 0
    events_stored: int = 0
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    runs_stalled: int = 0
    runs_evicted: int = 0


class Pipeline:
    def __init__(
        self,
        store: DuckStore,
        hasher: Hasher,
        *,
        default_agent_id: str,
        stall_timeout_seconds: float,
        max_queued_events: int,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._default_agent_id = default_agent_id
        self._stall_timeout = stall_timeout_seconds
        self._max_queued = max_queued_events
        self._runs: dict[str, RunState] = {}
        self._closing = False
        self.stats = PipelineStats()

    @property
    def open_runs(self) -> int:
        return len(self._runs)

    # --- Ingest protocol ------------------------------------------------------------------

    def check_capacity(self) -> None:
        if self._closing:
            self.stats.refused["shutting_down"] += 1
            raise ReceiverError(SHUTTING_DOWN, "the sidecar is shutting down; retry shortly")
        if self._store.queued_events >= self._max_queued:
            self.stats.refused["queue_full"] += 1
            raise ReceiverError(QUEUE_FULL, "the store queue is full; retry after the delay")

    async def export_traces(self, request: pb_trace_service.ExportTraceServiceRequest) -> ExportResult:
        translated = translate_request(request.resource_spans, self._hasher)
        self.stats.spans_received += len(translated.facts) + translated.rejected
        self.stats.spans_rejected += translated.rejected
        by_run: dict[str, list[SpanFacts]] = defaultdict(list)
        for facts in translated.facts:
            by_run[facts.run_id].append(facts)
        await self._load_states(by_run)
        events: list[RunEvent] = []
        rows: list[RunRow] = []
        for run_id, spans in by_run.items():
            spans.sort(key=lambda s: (s.start_ns, s.end_ns))
            state = self._runs[run_id]
            new = state.apply_spans(spans)
            if new:
                events.extend(new)
                rows.append(state.row())
        await self._commit(events, rows)
        message = ""
        if translated.rejected:
            message = f"{translated.rejected} span(s) rejected: " + "; ".join(translated.reasons)
        return ExportResult(translated.rejected, message)

    async def export_logs(self, request: pb_logs_service.ExportLogsServiceRequest) -> ExportResult:
        contents, dropped = translate_logs(request.resource_logs, self._hasher)
        self.stats.log_records_dropped += dropped
        by_run: dict[str, list] = defaultdict(list)
        for content in contents:
            by_run[content.run_id].append(content)
        await self._load_states(by_run)
        events: list[RunEvent] = []
        rows: list[RunRow] = []
        for run_id, items in by_run.items():
            state = self._runs[run_id]
            new = [event for item in items for event in state.apply_log_content(item)]
            if new:
                events.extend(new)
                rows.append(state.row())
        await self._commit(events, rows)
        return ExportResult()

    async def export_metrics(self, request: pb_metrics_service.ExportMetricsServiceRequest) -> ExportResult:
        self.stats.metric_points_dropped += sum(
            len(metric.ListFields())
            for resource in request.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        )
        return ExportResult()

    # --- run state -------------------------------------------------------------------------

    async def _load_states(self, run_ids: Iterable[str]) -> None:
        """Make sure every run has a state: in memory, rebuilt from the store, or new."""
        missing = [run_id for run_id in run_ids if run_id not in self._runs]
        if not missing:
            return
        loop = asyncio.get_running_loop()
        try:
            restored = await loop.run_in_executor(None, self._restore, missing)
        except StoreUnavailable as exc:
            raise ReceiverError(STORE_UNAVAILABLE, str(exc)) from None
        for run_id in missing:
            # Another export may have created it while we were reading.
            if run_id not in self._runs:
                self._runs[run_id] = restored.get(run_id) or RunState(run_id, self._default_agent_id)

    def _restore(self, run_ids: list[str]) -> dict[str, RunState]:
        """Executor thread: rebuild states of runs the store already knows."""
        states = {}
        for row in self._store.get_runs(run_ids):
            states[row.run_id] = RunState.restore(row, self._store.run_events(row.run_id), self._default_agent_id)
        return states

    async def _commit(self, events: list[RunEvent], rows: list[RunRow]) -> None:
        if not events and not rows:
            return
        future = self._store.submit(WriteBatch(events=events, runs=rows))
        try:
            await asyncio.wrap_future(future)
        except StoreUnavailable as exc:
            for row in rows:
                self._runs.pop(row.run_id, None)
            raise ReceiverError(STORE_UNAVAILABLE, str(exc)) from None
        self.stats.events_stored += len(events)

    async def sweep(self, now: float | None = None) -> None:
        """Stall runs idle past stall_timeout with no root span; evict every idle run."""
        now = time.monotonic() if now is None else now
        idle = [s for s in self._runs.values() if now - s.touched_at >= self._stall_timeout]
        if not idle:
            return
        events: list[RunEvent] = []
        rows: list[RunRow] = []
        for state in idle:
            if state.status not in TERMINAL_STATUSES:
                events.extend(state.close_stalled())
                rows.append(state.row())
                self.stats.runs_stalled += 1
        try:
            await self._commit(events, rows)
        except ReceiverError:
            log.warning("could not record %d stalled run(s); will retry", len(rows))
            return
        for state in idle:
            if self._runs.get(state.run_id) is state and now - state.touched_at >= self._stall_timeout:
                del self._runs[state.run_id]
                self.stats.runs_evicted += 1

    async def run_sweeper(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception:  # keep sweeping whatever one pass hit
                log.exception("stall sweep failed")

    def begin_shutdown(self) -> None:
        """Refuse new exports from now on; in-flight ones finish."""
        self._closing = True
