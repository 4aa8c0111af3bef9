"""Live decisions (``proto/dunetrace/sidecar/v1/decisions.proto``): the sidecar's policy
decisions and signals about an open run, streamed to the in-process SDK that watches it.

The pipeline publishes every committed batch's policy events and signals to the hub; a watch
gets the decisions already stored for its run first, then the new ones as they are committed,
each once. A watcher that falls ``MAX_QUEUED`` decisions behind is cut off (it watches again and
catches up from the store), so a stuck client never holds the pipeline's memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import grpc

from detectors.base import Signal
from detectors.events import POLICY_TRIGGERED, RunEvent
from dunetrace_sidecar._pb.decisions_pb2 import Decision, PolicyDecision, SignalRaised, WatchRequest
from dunetrace_sidecar.metrics import Metrics
from receiver.auth import key_matches

log = logging.getLogger("dunetrace.decisions")

SERVICE = "dunetrace.sidecar.v1.Decisions"
MAX_QUEUED = 256  # decisions one watcher may be behind before it is cut off
MAX_WATCHES = 10_000  # open watches in all
_RUN_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def policy_decision(event: RunEvent) -> Decision:
    p = event.payload
    params = p.get("action_params") or {}
    return Decision(
        decision_id=event.event_id,
        run_id=event.run_id,
        decided_unix_nano=event.ts_ns,
        policy=PolicyDecision(
            policy_id=int(p.get("policy_id") or 0),
            policy_name=str(p.get("policy_name") or ""),
            action=str(p.get("action_type") or ""),
            model=str(params.get("model") or ""),
            prompt=str(params.get("prompt") or ""),
            trigger=str(p.get("trigger") or ""),
            operator=str(p.get("operator") or ""),
            value_json=_json(p.get("value")),
            observed_json=_json(p.get("observed")),
        ),
    )


def signal_decision(signal: Signal) -> Decision:
    return Decision(
        decision_id=signal.signal_id,
        run_id=signal.run_id,
        decided_unix_nano=signal.detected_ns,
        signal=SignalRaised(
            signal_id=signal.signal_id,
            failure_type=signal.failure_type,
            severity=signal.severity,
            confidence=signal.confidence,
            step_index=signal.step_index,
        ),
    )


def decisions_of(events: Iterable[RunEvent], signals: Iterable[Signal]) -> list[Decision]:
    """The decisions among a run's events and signals: the sidecar's own policy events (not the
    ones an SDK reported, which it made itself) and the signals that are not shadow-mode."""
    out = [policy_decision(e) for e in events if e.kind == POLICY_TRIGGERED and e.payload.get("source") != "sdk"]
    out += [signal_decision(s) for s in signals if not s.shadow]
    return sorted(out, key=lambda d: d.decided_unix_nano)


class TooManyWatches(Exception):
    pass


class DecisionHub:
    """Who watches which run; the pipeline publishes to it from the event loop."""

    def __init__(self, max_watches: int = MAX_WATCHES) -> None:
        self._watchers: dict[str, set[asyncio.Queue[Decision | None]]] = {}
        self._count = 0
        self._max = max_watches

    @property
    def watches(self) -> int:
        return self._count

    def watch(self, run_id: str) -> asyncio.Queue[Decision | None]:
        if self._count >= self._max:
            raise TooManyWatches(f"{self._max} runs are watched already")
        queue: asyncio.Queue[Decision | None] = asyncio.Queue(MAX_QUEUED + 1)
        self._watchers.setdefault(run_id, set()).add(queue)
        self._count += 1
        return queue

    def unwatch(self, run_id: str, queue: asyncio.Queue[Decision | None]) -> None:
        queues = self._watchers.get(run_id)
        if queues is None or queue not in queues:
            return
        queues.discard(queue)
        self._count -= 1
        if not queues:
            del self._watchers[run_id]

    def publish(self, events: Iterable[RunEvent], signals: Iterable[Signal]) -> None:
        if not self._watchers:
            return
        watched = [e for e in events if e.run_id in self._watchers]
        flagged = [s for s in signals if s.run_id in self._watchers]
        for decision in decisions_of(watched, flagged):
            for queue in list(self._watchers.get(decision.run_id, ())):
                if queue.qsize() >= MAX_QUEUED:
                    queue.put_nowait(None)  # cut off: it fell too far behind
                    self.unwatch(decision.run_id, queue)
                else:
                    queue.put_nowait(decision)


def _bearer(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else value.decode(errors="replace")
    return ""


class DecisionsService:
    """``Watch`` on the OTLP/gRPC listener, authenticated with the API's keys."""

    def __init__(
        self,
        hub: DecisionHub,
        stored: Callable[[str], tuple[list[RunEvent], list[Signal]]],
        api_keys: tuple[str, ...],
        metrics: Metrics,
    ) -> None:
        self._hub = hub
        self._stored = stored  # blocking store read: (events, signals) of a run
        self._keys = api_keys
        self._sent = metrics.decisions_sent
        metrics.decision_watches.set_function(lambda: hub.watches)

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        watch = grpc.unary_stream_rpc_method_handler(
            self.watch,
            request_deserializer=WatchRequest.FromString,
            response_serializer=Decision.SerializeToString,
        )
        return [grpc.method_handlers_generic_handler(SERVICE, {"Watch": watch})]

    async def watch(self, request: WatchRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[Decision]:
        if not key_matches(_bearer(context), self._keys):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid API key is required (Bearer)")
        text = request.run_id.strip().lower()
        if not _RUN_ID.fullmatch(text):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "run_id: a UUID or 32 hex characters (the run's trace id)"
            )
        run_id = str(uuid.UUID(text))
        try:
            queue = self._hub.watch(run_id)
        except TooManyWatches as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        try:
            sent: set[str] = set()
            events, signals = await asyncio.get_running_loop().run_in_executor(None, self._stored, run_id)
            for decision in decisions_of(events, signals):
                sent.add(decision.decision_id)
                self._sent.labels(decision.WhichOneof("kind")).inc()
                yield decision
            while True:
                live = await queue.get()
                if live is None:  # cut off
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED, "fell too far behind; watch again to catch up"
                    )
                    return
                if live.decision_id not in sent:
                    sent.add(live.decision_id)
                    self._sent.labels(live.WhichOneof("kind")).inc()
                    yield live
        finally:
            self._hub.unwatch(run_id, queue)
