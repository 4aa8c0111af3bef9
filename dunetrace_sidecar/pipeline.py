"""The pipeline: decoded OTLP → run events (receiver) → signals (detectors) → durable store.

Runs on the event loop thread. Each export is translated, applied to the states of its runs,
run through the detectors, and written as one ``WriteBatch`` (events, run rows and signals
together); the call returns only when that batch is committed. If the write fails, the runs
it touched are dropped from memory and rebuilt from the store on their next span, so a
client's retry is applied again rather than deduplicated away.

Open runs live in an LRU map: idle runs are evaluated and evicted after ``stall_timeout``,
and past ``max_open_runs`` the least recently active are shed (they are rebuilt from the
store if they ever send again).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb_metrics_service

from detectors.base import Signal
from detectors.engine import DetectionEngine
from detectors.events import TERMINAL_KINDS as TERMINAL_EVENT_KINDS
from detectors.events import RunEvent, RunRow, fold_content
from detectors.policy_rules import PolicyRunState
from detectors.run_view import RunView
from detectors.settings import DetectorSettings
from dunetrace_sidecar.alerts import AlertDispatcher, deliveries_for
from dunetrace_sidecar.baseline import BaselineCache
from dunetrace_sidecar.decisions import DecisionHub
from dunetrace_sidecar.metrics import Metrics
from dunetrace_sidecar.policies import PolicyBook
from dunetrace_sidecar.translation import Translator
from receiver.assemble import STATUS_COMPLETED, TERMINAL_STATUSES, RunState
from receiver.errors import BAD_DATA, QUEUE_FULL, SHUTTING_DOWN, STORE_UNAVAILABLE, ReceiverError
from receiver.ingest import EncodedRequest, ExportResult
from receiver.sdk_ingest import SdkBatch, SdkEvent
from receiver.spans import LogContent, SpanFacts, SpanRole
from store.duckdb_store import BatchRejected, DuckStore, StoreUnavailable, WriteBatch
from store.run_ids import FIRST_CAPACITY, RunIdFilter

log = logging.getLogger("dunetrace.pipeline")
MAX_TOLD_ROOTLESS = 1000


@dataclass(slots=True)
class OpenRun:
    state: RunState  # translation (receiver)
    view: RunView  # detection (detectors)
    policy: PolicyRunState = field(default_factory=PolicyRunState)  # operator policies
    # Events of a trace with no LLM, tool or retrieval step yet: stored (acknowledged), but not
    # a run yet, so not judged; the detectors see them, in order, with the trace's first step.
    held: list[RunEvent] = field(default_factory=list)
    # Signals raised while the run's agent could still change: alerted once it is settled, so
    # an alert never names another agent than its run.
    unalerted: list[Signal] = field(default_factory=list)


@dataclass(slots=True)
class _Batch:
    events: list[RunEvent] = field(default_factory=list)
    rows: list[RunRow] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    alert: list[Signal] = field(default_factory=list)  # signals whose alerts are owed now
    relabels: list[tuple[str, str]] = field(default_factory=list)


class Pipeline:
    def __init__(
        self,
        store: DuckStore,
        translator: Translator,
        engine: DetectionEngine,
        baselines: BaselineCache,
        *,
        default_agent_id: str,
        stall_timeout_seconds: float,
        max_queued_events: int,
        max_open_runs: int,
        metrics: Metrics,
        policies: PolicyBook,
        alerts: AlertDispatcher | None = None,
        alert_agent_wait_seconds: float = 0.0,
        end_grace_seconds: float = 0.0,
        decisions: DecisionHub | None = None,
    ) -> None:
        self._store = store
        self.decisions = decisions or DecisionHub()  # the SDKs watching their runs
        self._translator = translator
        self.engine = engine
        self._baselines = baselines
        self._default_agent_id = default_agent_id
        self._stall_timeout = stall_timeout_seconds
        self._max_queued = max_queued_events
        self._max_open = max_open_runs
        self._runs: OrderedDict[str, OpenRun] = OrderedDict()  # least recently active first
        # The run ids the store may hold, so a new trace is opened without a store read; until
        # the ids stored before startup are read (read_stored_run_ids), every id is read for.
        self._stored_ids = RunIdFilter()
        self._stored_ids_read = False
        self._closing = False
        self.metrics = metrics
        self.policies = policies
        self._alerts = alerts
        self._agent_wait = alert_agent_wait_seconds
        self._end_grace = end_grace_seconds
        # runs whose root has arrived → when to ask the end detectors
        self._ending: dict[str, float] = {}
        # runs holding alerts until their agent is settled → when to send them anyway
        self._awaiting_agent: dict[str, float] = {}
        self._told_rootless: set[str] = set()  # services told once that their LLM spans have no root
        metrics.runs_open.set_function(lambda: len(self._runs))
        metrics.store_queue.set_function(lambda: store.queued_events)
        metrics.store_memory.set_function(store.memory_bytes)

    # --- Ingest protocol ------------------------------------------------------------------

    def check_capacity(self) -> None:
        if self._closing:
            raise ReceiverError(SHUTTING_DOWN, "the sidecar is shutting down; retry shortly")
        if self._store.queued_events >= self._max_queued:
            raise ReceiverError(QUEUE_FULL, "the store queue is full; retry after the delay")

    def note_refused(self, transport: str, signal: str, reason: str) -> None:
        self.metrics.export_requests.labels(transport, signal, reason).inc()

    async def export_traces(self, request: EncodedRequest, transport: str = "internal") -> ExportResult:
        received = time.monotonic()
        # Translation is most of the CPU an export costs: in worker processes, or off the event
        # loop at least, so health checks, the API and refusals stay prompt under load.
        translated = await self._translator.spans(request)
        by_run: dict[str, list[SpanFacts]] = defaultdict(list)
        for facts in translated.facts:
            by_run[facts.run_id].append(facts)
            if facts.is_root and facts.role is SpanRole.LLM:
                self._tell_rootless(facts.service_name or self._default_agent_id)
        # Only GenAI spans open a trace here; others join a trace that is already open or stored.
        may_open = {run_id for run_id, spans in by_run.items() if any(s.role is not SpanRole.NONE for s in spans)}
        await self._load_runs(by_run, may_open)
        changed: list[tuple[OpenRun, list[RunEvent], str]] = []
        for run_id, spans in by_run.items():
            if run_id not in self._runs:
                continue  # a trace with no GenAI span: not an agent run
            spans.sort(key=lambda s: (s.start_ns, s.end_ns))
            run = self._touch(run_id)
            status_before = run.state.status
            new = run.state.apply_spans(spans)
            if new:
                changed.append((run, new, status_before))
        await self._detect_and_commit(changed, received)
        metrics = self.metrics
        metrics.spans_received.labels(transport).inc(len(translated.facts) + translated.rejected + translated.mirrored)
        if translated.mirrored:
            metrics.spans_left_out.labels(transport, "dunetrace_sdk_mirror").inc(translated.mirrored)
        message = ""
        if translated.rejected:
            metrics.spans_refused.labels(transport, "invalid_id").inc(translated.rejected)
            message = f"{translated.rejected} span(s) rejected: " + "; ".join(translated.reasons)
        metrics.export_requests.labels(transport, "traces", "partial" if translated.rejected else "accepted").inc()
        return ExportResult(translated.rejected, message)

    async def export_sdk(self, body: bytes) -> SdkBatch:
        """One ``POST /v1/ingest`` batch of the Dunetrace SDK: its events reduced (off the event
        loop), each run's new events assembled, judged and committed before this returns.
        Raises BatchInvalid for a body that is not a batch; ReceiverError as the OTLP exports do."""
        received = time.monotonic()
        batch = await self._translator.sdk(body)
        by_run: dict[str, list[SdkEvent]] = defaultdict(list)
        for event in batch.events:
            by_run[event.run_id].append(event)
        await self._load_runs(by_run, set(by_run))  # SDK events open a run: they are all agent events
        changed: list[tuple[OpenRun, list[RunEvent], str]] = []
        for run_id, events in by_run.items():
            run = self._touch(run_id)
            status_before = run.state.status
            new = run.state.apply_sdk(events)
            if new:
                changed.append((run, new, status_before))
        await self._detect_and_commit(changed, received)
        self.metrics.sdk_events.labels("accepted").inc(len(batch.events))
        self.metrics.sdk_events.labels("ignored").inc(batch.ignored)
        self.metrics.sdk_events.labels("skipped").inc(batch.skipped)
        self.metrics.export_requests.labels("sdk", "events", "accepted").inc()
        return batch

    def _tell_rootless(self, service: str) -> None:
        """An LLM span with no parent is a trace, so a run, of its own: say once per service how to
        make one run of an agent's calls."""
        if service in self._told_rootless or len(self._told_rootless) >= MAX_TOLD_ROOTLESS:
            return
        self._told_rootless.add(service)
        log.warning(
            "service %s sends LLM spans with no parent span: each call becomes a run of its own."
            " Wrap the agent's loop in one span (e.g. invoke_agent with gen_ai.agent.name) to make it one run",
            service,
        )

    async def export_logs(self, request: EncodedRequest, transport: str = "internal") -> ExportResult:
        received = time.monotonic()
        contents, dropped = await self._translator.logs(request)
        self.metrics.log_records_dropped.inc(dropped)
        by_run: dict[str, list[LogContent]] = defaultdict(list)
        for content in contents:
            by_run[content.run_id].append(content)
        await self._load_runs(by_run, set(by_run))
        changed = []
        for run_id, items in by_run.items():
            run = self._touch(run_id)
            new = [event for item in items for event in run.state.apply_log_content(item)]
            if new:
                changed.append((run, new, run.state.status))
        await self._detect_and_commit(changed, received)
        self.metrics.export_requests.labels(transport, "logs", "accepted").inc()
        return ExportResult()

    async def export_metrics(self, request: EncodedRequest, transport: str = "internal") -> ExportResult:
        """Decoded here (metrics are only counted): BAD_DATA for a request that does not decode."""
        message = request.decode(pb_metrics_service.ExportMetricsServiceRequest)
        self.metrics.export_requests.labels(transport, "metrics", "accepted").inc()
        self.metrics.metric_points_dropped.inc(
            sum(
                _data_points(metric)
                for resource in message.resource_metrics
                for scope in resource.scope_metrics
                for metric in scope.metrics
            )
        )
        return ExportResult()

    # --- detection and commit -------------------------------------------------------------

    async def _detect_and_commit(self, changed: list[tuple[OpenRun, list[RunEvent], str]], received: float) -> None:
        if not changed:
            return
        agents = {run.state.agent_id or self._default_agent_id for run, _, _ in changed}
        await self._load_baselines(agents)
        batch = _Batch()
        now_ns = time.time_ns()
        for run, new, status_before in changed:
            if run.state.steps == 0:
                # Not a run until it has a step: stored at once (it was acknowledged; listed from
                # its first step on) and judged with that step.
                run.held.extend(new)
                batch.events.extend(new)
                batch.rows.append(run.state.row())
                continue
            stored_before, run.held = run.held, []
            agent_id = run.state.agent_id or self._default_agent_id
            self._settle_agent(run, agent_id, batch)
            first_signal = len(batch.signals)
            # A run end among the held events (a parentless span that ended before the rest of
            # its trace arrived) is judged after the steps, as when the trace comes in one piece.
            held_ends = [e for e in stored_before if e.kind in TERMINAL_EVENT_KINDS]
            feed = [e for e in stored_before if e.kind not in TERMINAL_EVENT_KINDS] + new + held_ends
            self._detect(run, agent_id, feed, now_ns, batch, stored={id(e) for e in stored_before})
            self._owe_alerts(run, batch.signals[first_signal:], batch)
            if status_before in TERMINAL_STATUSES and run.state.status in TERMINAL_STATUSES:
                # Spans after the end (another service's, or across a restart): judged again.
                self._ending.setdefault(run.state.run_id, time.monotonic() + self._end_grace)
            batch.rows.append(run.state.row())
            if run.state.status == STATUS_COMPLETED and status_before != STATUS_COMPLETED:
                self._baselines.record(run.view.agent_id, run.state.steps)
            if run.state.status in TERMINAL_STATUSES and status_before not in TERMINAL_STATUSES:
                self.metrics.runs_ended.labels(run.state.status).inc()
        await self._commit(batch)
        if batch.signals:
            elapsed = time.monotonic() - received
            for _ in batch.signals:
                self.metrics.detection_latency.observe(elapsed)
        self._shed()

    def _detect(
        self,
        run: OpenRun,
        agent_id: str,
        new: list[RunEvent],
        now_ns: int,
        batch: _Batch,
        stored: frozenset[int] | set[int] = frozenset(),
    ) -> None:
        """Detectors, then the agent's policies, event by event (a policy may test a signal).
        The events whose ``id()`` is in ``stored`` were stored before (judged only now). With an
        end grace, a run's end is judged once the grace has passed (``finish_ending_runs``)."""
        run_id = run.state.run_id
        view = run.view

        def judge_policies(event: RunEvent, signals: list[Signal]) -> None:
            triggered, raised = self.policies.evaluate(run.policy, run_id, agent_id, event, view.event_step, signals)
            if id(event) not in stored:
                batch.events.append(event)
            batch.signals.extend(signals)
            if raised:
                view.fired.update(s.failure_type for s in raised)
                batch.signals.extend(raised)
            if triggered:
                batch.events.extend(triggered)
                for policy_event in triggered:
                    self.metrics.policy_triggers.labels(policy_event.payload["action_type"]).inc()

        deferred = self._end_grace > 0
        self.engine.process(view, new, now_ns, end=not deferred, after=judge_policies)
        if deferred and any(event.kind in TERMINAL_EVENT_KINDS for event in new):
            self._ending.setdefault(run_id, time.monotonic() + self._end_grace)

    @staticmethod
    def _settle_agent(run: OpenRun, agent_id: str, batch: _Batch) -> None:
        """The run's agent as known now; signals already raised follow a change."""
        if agent_id != run.view.agent_id and run.view.fired:
            batch.relabels.append((run.state.run_id, agent_id))
            run.unalerted = [replace(signal, agent_id=agent_id) for signal in run.unalerted]
        run.view.agent_id = agent_id

    def _owe_alerts(self, run: OpenRun, raised: list[Signal], batch: _Batch) -> None:
        """Alerts go out once the run's agent is settled (named up front, its root arrived, or the
        run ended), or when ``alerts.agent_wait_seconds`` have passed since they were raised."""
        run.unalerted.extend(raised)
        if not run.unalerted:
            return
        run_id = run.state.run_id
        if run.state.agent_settled or run.state.status != "running" or self._agent_wait <= 0:
            batch.alert.extend(run.unalerted)
            run.unalerted = []
            self._awaiting_agent.pop(run_id, None)
        else:
            self._awaiting_agent.setdefault(run_id, time.monotonic() + self._agent_wait)

    async def release_alerts(self, now: float | None = None) -> None:
        """Alerts that waited ``alerts.agent_wait_seconds`` for their run's agent go out as they are."""
        now = time.monotonic() if now is None else now
        due = [run_id for run_id, deadline in self._awaiting_agent.items() if deadline <= now]
        if not due:
            return
        batch = _Batch()
        for run_id in due:
            del self._awaiting_agent[run_id]
            run = self._runs.get(run_id)
            if run is not None:
                batch.alert.extend(run.unalerted)
                run.unalerted = []
        try:
            await self._commit(batch)
        except ReceiverError:
            log.warning("could not record %d owed alert(s); will retry", len(batch.alert))
            for signal in batch.alert:
                if (run := self._runs.get(signal.run_id)) is not None:
                    run.unalerted.append(signal)
                    self._awaiting_agent[signal.run_id] = now

    def end_pending(self, run_id: str) -> bool:
        """Whether the run's end-of-run detectors still wait for late spans."""
        return run_id in self._ending

    async def finish_ending_runs(self, now: float | None = None, everything: bool = False) -> None:
        """Ask the end detectors of runs whose root arrived ``runs.end_grace_seconds`` ago, with
        what arrived since (spans of other services or exports after the root)."""
        now = time.monotonic() if now is None else now
        due = [run_id for run_id, deadline in self._ending.items() if everything or deadline <= now]
        if not due:
            return
        batch = _Batch()
        now_ns = time.time_ns()
        for run_id in due:
            self._ending[run_id] = math.inf  # asked now; pending (for readers) until committed
            run = self._runs.get(run_id)
            if run is None or run.state.status not in TERMINAL_STATUSES:
                continue  # shed (rebuilt runs are judged again when they end) or revived
            view = run.view
            view.final_answer = run.state.exit_reason == "final_answer"
            marker = RunEvent(run_id, "ended", run.state.status, now_ns, "", {})
            raised = self.engine.evaluate_end(view, marker, now_ns)
            batch.signals.extend(raised)
            batch.rows.append(run.state.row())
            self._owe_alerts(run, raised, batch)
        try:
            await self._commit(batch)
        except ReceiverError:
            log.warning("could not record the end of %d run(s)", len(due))
        for run_id in due:
            self._ending.pop(run_id, None)

    async def _timers(self) -> None:
        await self.finish_ending_runs()
        await self.release_alerts()

    async def run_timers(self, interval: float) -> None:
        await _every(interval, self._timers, "run timers")

    async def _load_baselines(self, agents: set[str]) -> None:
        missing = self._baselines.missing(agents)
        if not missing:
            return
        loop = asyncio.get_running_loop()
        try:
            loaded = await loop.run_in_executor(None, self._baselines.load, missing)
        except StoreUnavailable as exc:
            raise ReceiverError(STORE_UNAVAILABLE, str(exc)) from None
        except Exception as exc:  # a read the store could not answer (I/O, a damaged block)
            log.error("store read failed: %s", type(exc).__name__)
            raise ReceiverError(STORE_UNAVAILABLE, "store read failed") from None
        self._baselines.install(loaded)

    async def _commit(self, batch: _Batch) -> None:
        if not batch.events and not batch.rows and not batch.signals and not batch.alert:
            return
        owed = deliveries_for(batch.alert, self._alerts.destinations, time.time_ns()) if self._alerts else []
        future = self._store.submit(
            WriteBatch(
                events=batch.events, runs=batch.rows, signals=batch.signals, deliveries=owed, relabels=batch.relabels
            )
        )
        try:
            await asyncio.wrap_future(future)
        except StoreUnavailable as exc:
            for row in batch.rows:
                self._runs.pop(row.run_id, None)
            kind = BAD_DATA if isinstance(exc, BatchRejected) else STORE_UNAVAILABLE
            raise ReceiverError(kind, str(exc)) from None
        if owed and self._alerts is not None:
            self._alerts.wake()
        self.decisions.publish(batch.events, batch.signals)  # committed: an SDK may act on them
        self.metrics.events_stored.inc(len(batch.events))
        for signal in batch.signals:
            self.metrics.signals.labels(signal.failure_type, signal.severity, str(signal.shadow).lower()).inc()

    # --- open runs ------------------------------------------------------------------------

    def _touch(self, run_id: str) -> OpenRun:
        run = self._runs[run_id]
        self._runs.move_to_end(run_id)
        return run

    async def _load_runs(self, run_ids: Iterable[str], may_open: set[str]) -> None:
        """Make sure every run is open: in memory, rebuilt from the store, or new (only those in
        ``may_open``)."""
        missing = [run_id for run_id in run_ids if run_id not in self._runs]
        if not missing:
            return
        stored = self._stored_ids
        maybe_stored = [r for r in missing if stored.may_hold(r)] if self._stored_ids_read else missing
        restored: dict[str, OpenRun] = {}
        if maybe_stored:
            loop = asyncio.get_running_loop()
            try:
                restored = await loop.run_in_executor(None, self._restore, maybe_stored)
            except StoreUnavailable as exc:
                raise ReceiverError(STORE_UNAVAILABLE, str(exc)) from None
            except Exception as exc:  # a read the store could not answer (I/O, a damaged block)
                log.error("store read failed: %s", type(exc).__name__)
                raise ReceiverError(STORE_UNAVAILABLE, "store read failed") from None
        for run_id in missing:
            # Another export may have opened it while we were reading.
            if run_id not in self._runs and (run_id in restored or run_id in may_open):
                run = restored.get(run_id)
                if run is None:
                    stored.add(run_id)  # before its first commit: from now on it may be stored
                    run = OpenRun(RunState(run_id, self._default_agent_id), RunView(run_id, self._default_agent_id))
                self._runs[run_id] = run

    async def read_stored_run_ids(self) -> None:
        """From startup, in the background: the run ids stored before it, so that new traces no
        longer cost a store read (until then each one does). A failed read leaves it so."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            found = await loop.run_in_executor(None, self._scan_run_ids)
        except Exception as exc:
            if not self._closing:
                log.error("could not read the stored run ids (%s): new traces are looked up", type(exc).__name__)
            return
        self._stored_ids.absorb(found)
        self._stored_ids_read = True
        log.info("stored run ids read in %.1f s (%d KiB)", time.monotonic() - started, self._stored_ids.bytes // 1024)

    def _scan_run_ids(self) -> RunIdFilter:
        # One layer that holds them all: a store of millions would otherwise build a dozen
        # doubling layers, each probed on every lookup. (Runs committed between the count and the
        # scan go to a second layer; the daemon's own runs go to its own filter's layers.)
        found = RunIdFilter(capacity=max(FIRST_CAPACITY, self._store.run_count()))
        for batch in self._store.run_id_batches():
            if self._closing:
                raise StoreUnavailable("shutting down")  # the store is about to close
            found.add_all(batch)
        return found

    def _restore(self, run_ids: list[str]) -> dict[str, OpenRun]:
        """Executor thread: rebuild runs the store already knows (events replayed, no detection)."""
        runs = {}
        for row in self._store.get_runs(run_ids):
            events = self._store.run_events(row.run_id)
            state = RunState.restore(row, events, self._default_agent_id)
            view = RunView(row.run_id, row.agent_id)
            for event in sorted(fold_content(events), key=RunEvent.sort_key):
                view.apply(event)
            signals = self._store.run_signals(row.run_id)
            view.fired = {s.failure_type for s in signals}
            policy = PolicyRunState()
            PolicyBook.restore(policy, sorted(events, key=RunEvent.sort_key), signals, self.policies.prices)
            run = runs[row.run_id] = OpenRun(state, view, policy)
            if self._alerts is not None and state.status == "running" and not state.agent_settled:
                # alerts it still owed when it was shed or the daemon stopped
                run.unalerted = [s for s in signals if not s.shadow and not self._store.deliveries_of(s.signal_id)]
        return runs

    def _shed(self) -> None:
        """Past the cap, forget the least recently active runs (rebuilt from the store if needed)."""
        while len(self._runs) > self._max_open:
            self._runs.popitem(last=False)
            self.metrics.runs_shed.inc()

    async def sweep(self, now: float | None = None) -> None:
        """Evaluate and stall runs idle past stall_timeout with no root span; evict every idle run."""
        now = time.monotonic() if now is None else now
        idle = []
        for run in self._runs.values():  # least recently active first: stop at the first active one
            if now - run.state.touched_at < self._stall_timeout:
                break
            idle.append(run)
        if not idle:
            return
        batch = _Batch()
        stalled = 0
        for run in idle:
            if run.state.steps == 0:
                continue  # never became a run: forgotten below, nothing was stored
            if run.state.status not in TERMINAL_STATUSES:
                events = run.state.close_stalled()  # requested tool calls no span answered
                self._settle_agent(run, run.state.agent_id or self._default_agent_id, batch)
                batch.events.extend(events)
                raised = self.engine.process(run.view, events) + self.engine.close_stalled(run.view)
                batch.signals.extend(raised)
                self._owe_alerts(run, raised, batch)
                batch.rows.append(run.state.row())
                stalled += 1
        try:
            await self._commit(batch)
        except ReceiverError:
            log.warning("could not record %d stalled run(s); will retry", stalled)
            return
        self.metrics.runs_ended.labels("stalled").inc(stalled)
        for run in idle:
            run_id = run.state.run_id
            if self._runs.get(run_id) is run and now - run.state.touched_at >= self._stall_timeout:
                del self._runs[run_id]

    async def run_sweeper(self, interval: float) -> None:
        await _every(interval, self.sweep, "stall sweep")

    def begin_shutdown(self) -> None:
        """Refuse new exports from now on; in-flight ones finish."""
        self._closing = True

    def reconfigure(self, settings: DetectorSettings) -> None:
        """New thresholds apply from the next event on (hot reload)."""
        self.engine.settings = settings


async def _every(interval: float, step: Callable[[], Awaitable[None]], what: str) -> None:
    """Run ``step`` every ``interval`` seconds, whatever one pass hits."""
    while True:
        await asyncio.sleep(interval)
        try:
            await step()
        except Exception:
            log.exception("%s failed", what)


def _data_points(metric: Any) -> int:
    """The data points of one OTLP metric, whatever its type (gauge, sum, histogram, …)."""
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind else 0
