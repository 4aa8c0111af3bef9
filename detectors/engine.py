"""The detection engine: feeds a run's events to its view and asks the detectors.

Live detectors are asked after each event of a kind they watch; end detectors when the run
completes, errors or stalls. A type fires at most once per run (``RunView.fired``), so a
re-delivered span never duplicates a signal; the signal id is derived from run and type too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from . import events as ev
from .base import END, LIVE, REGISTRY, Detector, DetectorConfig, Signal, signal_id_for
from .events import RunEvent
from .run_view import RunView
from .settings import DetectorSettings

Baseline = Callable[[str], float | None]


def _no_baseline(agent_id: str) -> float | None:
    return None


class DetectionEngine:
    """Runs on the pipeline's thread; holds no per-run state of its own (that is the RunView)."""

    def __init__(self, settings: DetectorSettings | None = None, baseline: Baseline = _no_baseline) -> None:
        self.settings = settings or DetectorSettings.default()
        self.baseline = baseline
        detectors = list(REGISTRY.values())
        self._live: dict[str, list[Detector[Any]]] = {}
        for detector in detectors:
            if detector.mode == LIVE:
                for kind in detector.triggers:
                    self._live.setdefault(kind, []).append(detector)
        self._end = [d for d in detectors if d.mode == END]
        self._live_subsets: dict[frozenset[str], dict[str, list[Detector[Any]]]] = {}

    def process(
        self,
        view: RunView,
        events: Iterable[RunEvent],
        now_ns: int | None = None,
        end: bool = True,
        failure_types: frozenset[str] | None = None,
        after: Callable[[RunEvent, list[Signal]], None] | None = None,
    ) -> list[Signal]:
        """Apply ``events`` in order; the signals they prove, each at most once per run.
        ``end=False``: a terminal event does not ask the end detectors (the caller will, later).
        ``failure_types``: only the live detectors of these types are asked (the in-process SDK
        runs those its ``signal`` policies name; the sidecar runs them all).
        ``after``: called after each event with the signals it raised, before the next event is
        applied (the sidecar's policies judge each event, and may mark a type fired)."""
        configs = self.settings.for_agent(view.agent_id)
        view.baseline_p75 = self.baseline(view.agent_id)
        now_ns = now_ns or time.time_ns()
        live = self._live if failure_types is None else self._live_of(failure_types)
        signals: list[Signal] = []
        for event in events:
            first = len(signals)
            for seen in view.apply(event):
                self._ask(live.get(seen.kind, ()), view, seen, configs, now_ns, signals)
                if end and seen.kind in ev.TERMINAL_KINDS:
                    signals.extend(self.evaluate_end(view, seen, now_ns))
            if after is not None:
                after(event, signals[first:])
        return signals

    def _live_of(self, failure_types: frozenset[str]) -> dict[str, list[Detector[Any]]]:
        live = self._live_subsets.get(failure_types)
        if live is None:
            live = {kind: [d for d in ds if d.failure_type in failure_types] for kind, ds in self._live.items()}
            if len(self._live_subsets) >= 64:  # policies change rarely; a bound, not a cache policy
                self._live_subsets.clear()
            self._live_subsets[failure_types] = live
        return live

    def close_stalled(self, view: RunView, now_ns: int | None = None) -> list[Signal]:
        """The run went quiet without a root span: evaluate it as ended with no exit."""
        view.outcome = "stalled"
        view.final_answer = False
        view.event_step = view.step
        marker = RunEvent(view.run_id, "stalled", "run.stalled", now_ns or time.time_ns(), "", {})
        return self.evaluate_end(view, marker, now_ns)

    def evaluate_end(self, view: RunView, event: RunEvent, now_ns: int | None = None) -> list[Signal]:
        configs = self.settings.for_agent(view.agent_id)
        now_ns = now_ns or time.time_ns()
        signals: list[Signal] = []
        self._ask(self._end, view, event, configs, now_ns, signals)
        return signals

    @staticmethod
    def _ask(
        detectors: Iterable[Detector[Any]],
        view: RunView,
        event: RunEvent,
        configs: dict[str, DetectorConfig] | Any,
        now_ns: int,
        out: list[Signal],
    ) -> None:
        """Ask each detector not fired in the run and enabled; a finding becomes a signal and
        marks its type fired. The daemon's hottest loop (every event, every detector watching its
        kind): the fired types are read once into a tuple, as ``in`` on the run's FailureTypes is
        a Python call per detector."""
        fired = tuple(view.fired)
        for detector in detectors:
            failure_type = detector.failure_type
            if failure_type in fired:
                continue
            config = configs[failure_type]
            if not config.enabled:
                continue
            finding = detector.check(view, event, config)
            if finding is None:
                continue
            view.fired.add(failure_type)
            fired += (failure_type,)
            out.append(
                Signal(
                    signal_id=signal_id_for(view.run_id, failure_type),
                    run_id=view.run_id,
                    agent_id=view.agent_id,
                    failure_type=failure_type,
                    severity=finding.severity,
                    confidence=finding.confidence,
                    step_index=finding.step_index,
                    evidence=dict(finding.evidence),
                    detected_ns=now_ns,
                    mode=detector.mode,
                    shadow=config.shadow,
                )
            )
