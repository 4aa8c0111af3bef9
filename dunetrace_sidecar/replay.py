"""``dunetrace-sidecar replay FILE...``: the daemon's translation and detectors over recordings.

Backtest a threshold change before deploying it: the same spans, the same code path, no
store and no network. Inputs, in the order given:

- recorded OTLP export requests: ``.pb`` (traces, or logs when named ``*.logs.pb``),
  ``.pb.gz``, and OTLP/JSON ``.json`` (traces or logs, told apart by their top-level key);
- run events as JSON Lines (``.jsonl``): one event per line, as ``GET /v1/runs/{id}`` shows
  them plus ``run_id`` (and ``agent_id``), or the Dunetrace SDK's ``AgentEvent`` dicts.

Runs that never see their root span are closed as stalled at the end.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from detectors.base import Signal
from detectors.engine import DetectionEngine
from detectors.events import EVENT_KINDS, RunEvent
from detectors.run_view import RunView
from dunetrace_sidecar.baseline import BaselineCache
from dunetrace_sidecar.config import Config
from receiver import otlp_json
from receiver.assemble import STATUS_COMPLETED, TERMINAL_STATUSES, RunState
from receiver.content import Hasher
from receiver.spans import translate_logs, translate_request


class ReplayError(ValueError):
    """A file that cannot be read as any of the accepted formats."""


@dataclass
class ReplayedRun:
    run_id: str
    state: RunState | None  # None for runs replayed from run events
    view: RunView
    signals: list[Signal] = field(default_factory=list)
    status: str = "running"
    steps: int = 0


class Replay:
    def __init__(self, config: Config) -> None:
        self._baselines = BaselineCache(lambda agent_id, n: [])
        self._engine = DetectionEngine(config.detectors, self._baselines.p75)
        self._hasher = Hasher(config.privacy.hash_key or None)
        self._default_agent_id = config.runs.default_agent_id
        self.runs: dict[str, ReplayedRun] = {}

    # --- inputs -------------------------------------------------------------------------

    def feed_file(self, path: Path) -> None:
        name = path.name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ReplayError(f"{path}: {exc.strerror}") from None
        if name.endswith(".gz"):
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise ReplayError(f"{path}: not gzip: {exc}") from None
            name = name[: -len(".gz")]
        if name.endswith(".jsonl"):
            self.feed_run_events(_json_lines(path, data))
        elif name.endswith(".json"):
            self._feed_otlp_json(path, data)
        elif name.endswith(".logs.pb"):
            self.feed_logs(_parse_pb(path, data, ExportLogsServiceRequest()))
        else:
            self.feed_traces(_parse_pb(path, data, ExportTraceServiceRequest()))

    def _feed_otlp_json(self, path: Path, data: bytes) -> None:
        try:
            head = json.loads(data)
        except ValueError as exc:
            raise ReplayError(f"{path}: not JSON: {exc}") from None
        try:
            if isinstance(head, dict) and "resourceLogs" in head:
                self.feed_logs(otlp_json.parse(data, ExportLogsServiceRequest()))
            else:
                self.feed_traces(otlp_json.parse(data, ExportTraceServiceRequest()))
        except otlp_json.JsonDecodeError as exc:
            raise ReplayError(f"{path}: {exc}") from None

    def feed_traces(self, request: ExportTraceServiceRequest) -> None:
        translated = translate_request(request.resource_spans, self._hasher)
        by_run: dict[str, list[Any]] = {}
        for facts in translated.facts:
            by_run.setdefault(facts.run_id, []).append(facts)
        for run_id, spans in by_run.items():
            run = self._open(run_id)
            assert run.state is not None
            spans.sort(key=lambda s: (s.start_ns, s.end_ns))
            self._detect(run, run.state.apply_spans(spans))

    def feed_logs(self, request: ExportLogsServiceRequest) -> None:
        contents, _ = translate_logs(request.resource_logs, self._hasher)
        for content in contents:
            run = self._open(content.run_id)
            assert run.state is not None
            self._detect(run, run.state.apply_log_content(content))

    def feed_run_events(self, events: Iterable[tuple[str, RunEvent]]) -> None:
        for agent_id, event in events:
            run = self.runs.get(event.run_id)
            if run is None:
                run = self.runs[event.run_id] = ReplayedRun(event.run_id, None, RunView(event.run_id, agent_id))
            self._detect(run, [event])

    # --- runs ---------------------------------------------------------------------------

    def _open(self, run_id: str) -> ReplayedRun:
        run = self.runs.get(run_id)
        if run is None:
            state = RunState(run_id, self._default_agent_id)
            run = self.runs[run_id] = ReplayedRun(run_id, state, RunView(run_id, self._default_agent_id))
        return run

    def _detect(self, run: ReplayedRun, events: list[RunEvent]) -> None:
        before = run.status
        if run.state is not None:
            run.view.agent_id = run.state.agent_id or self._default_agent_id
        run.signals.extend(self._engine.process(run.view, events))
        if run.state is not None:
            run.status, run.steps = run.state.status, run.state.steps
        else:
            run.status, run.steps = run.view.outcome or "running", run.view.step
        if run.status == STATUS_COMPLETED and before != STATUS_COMPLETED:
            self._baselines.record(run.view.agent_id, run.steps)

    def finish(self) -> list[ReplayedRun]:
        """Close runs that never ended (as the daemon does after stall_timeout)."""
        for run in self.runs.values():
            if run.status in TERMINAL_STATUSES:
                continue
            if run.state is not None:
                events = run.state.close_stalled()
                run.signals.extend(self._engine.process(run.view, events))
            run.signals.extend(self._engine.close_stalled(run.view))
            run.status = "stalled"
        return list(self.runs.values())


def _parse_pb(path: Path, data: bytes, message: Any) -> Any:
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise ReplayError(f"{path}: not an OTLP protobuf request: {exc}") from None
    return message


def _timestamp_ns(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("timestamp must be a number or RFC 3339")
    if isinstance(value, int) and value > 10**14:
        return value  # already nanoseconds
    if isinstance(value, (int, float)):
        return int(value * 1e9)  # Unix seconds (the SDK's AgentEvent)
    parsed = datetime.fromisoformat(str(value).upper().replace("Z", "+00:00"))
    return int(parsed.timestamp() * 1e6) * 1000


def _json_lines(path: Path, data: bytes) -> Iterator[tuple[str, RunEvent]]:
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            kind = item.get("event_type") or item["kind"]
            if kind not in EVENT_KINDS:
                continue  # the SDK's other event types (policy, memory, voice…) carry nothing we detect on
            payload = dict(item.get("payload") or {})
            if "injection_signal" in payload and "injection" not in payload:
                payload["injection"] = payload.pop("injection_signal")
            step = item.get("step_index")
            call_id = item.get("call_id") or payload.get("call_id") or f"step:{step}"
            ts = item.get("ts_ns") or item.get("timestamp")
            event = RunEvent(
                run_id=str(item["run_id"]),
                event_id=item.get("event_id") or f"{path.name}:{number}",
                kind=kind,
                ts_ns=_timestamp_ns(ts) if ts is not None else number,
                call_id=str(call_id),
                payload=payload,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ReplayError(f"{path}:{number}: not a run event: {exc}") from None
        yield str(item.get("agent_id") or "default"), event


# --- output ------------------------------------------------------------------------------


def signal_dict(signal: Signal) -> dict[str, Any]:
    return {
        "failure_type": signal.failure_type,
        "severity": signal.severity,
        "confidence": signal.confidence,
        "step_index": signal.step_index,
        "mode": signal.mode,
        "shadow": signal.shadow,
        "evidence": signal.evidence,
    }


def write_json(runs: list[ReplayedRun], out: TextIO) -> None:
    body = [
        {
            "run_id": run.run_id,
            "agent_id": run.view.agent_id,
            "status": run.status,
            "step_count": run.steps,
            "signals": [signal_dict(s) for s in run.signals],
        }
        for run in runs
    ]
    json.dump({"runs": body}, out, indent=2)
    out.write("\n")


def write_table(runs: list[ReplayedRun], out: TextIO) -> None:
    out.write(f"{'run_id':36}  {'agent_id':24}  {'status':9}  {'steps':>5}  signals\n")
    for run in runs:
        signals = ", ".join(
            f"{s.failure_type} {s.severity} {s.confidence:.2f}@{s.step_index}{' (shadow)' if s.shadow else ''}"
            for s in run.signals
        )
        out.write(f"{run.run_id:36}  {run.view.agent_id[:24]:24}  {run.status:9}  {run.steps:5d}  {signals or '-'}\n")
    fired = sum(len(run.signals) for run in runs)
    out.write(f"{len(runs)} run(s), {fired} signal(s)\n")


def run_replay(config: Config, files: list[str], as_json: bool, out: TextIO = sys.stdout) -> int:
    replay = Replay(config)
    for name in files:
        replay.feed_file(Path(name))
    runs = replay.finish()
    (write_json if as_json else write_table)(runs, out)
    return 0
