"""Live decisions from the sidecar (``proto/dunetrace/sidecar/v1/decisions.proto``): while a run
is open the SDK watches it, and what the sidecar decides about it — its policies' actions and
its signals — lands on the run within the same second (``RunContext._apply_decision``): a
``stop`` raises ``PolicyViolation`` at the agent's next step, ``switch_model`` and
``inject_prompt`` set ``model_override`` and ``prompt_additions`` as local policies do.

All of it runs on one background thread with its own asyncio loop (grpc.aio): the caller's
thread only schedules a watch and never waits on the network. Needs ``grpcio``
(``pip install 'dunetrace[grpc]'``); without it, or while the sidecar cannot be reached, the SDK
works on its local policies and says so once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .run_context import RunContext

logger = logging.getLogger("dunetrace")

WATCH = "/dunetrace.sidecar.v1.Decisions/Watch"
DEFAULT_TARGET = "127.0.0.1:4317"
RETRY_AFTER_FAILURE_S = 10.0  # after the sidecar could not be reached, runs do not try again for this long


def decisions_target(explicit: str | None) -> str:
    """Where the sidecar's gRPC listener is: ``decisions_endpoint=``, else
    ``DUNETRACE_DECISIONS_ENDPOINT``, else the host of ``OTEL_EXPORTER_OTLP_ENDPOINT`` on 4317,
    else 127.0.0.1:4317."""
    for value in (explicit, os.environ.get("DUNETRACE_DECISIONS_ENDPOINT")):
        if value:
            parts = urlsplit(value if "://" in value else f"//{value}")
            return f"{parts.hostname}:{parts.port or 4317}"
    otlp = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if otlp:
        host = urlsplit(otlp if "://" in otlp else f"//{otlp}").hostname
        if host:
            return f"{host}:4317"
    return DEFAULT_TARGET


class DecisionWatcher:
    """One gRPC channel to the sidecar and one watch per open run."""

    def __init__(self, target: str, api_key: str | None) -> None:
        self.target = target
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel: Any = None
        self._call: Any = None
        self._messages: Any = None
        self._lock = threading.Lock()
        self._tasks: dict[str, Future[None]] = {}
        self._unavailable_until = 0.0
        self._warned = False
        self._closed = False

    @staticmethod
    def available() -> bool:
        try:
            import grpc  # noqa: F401

            from ._pb import decisions_pb2  # noqa: F401
        except ImportError:
            return False
        return True

    def _start(self) -> asyncio.AbstractEventLoop:
        """The background loop and the channel, made on first use."""
        if self._loop is not None:
            return self._loop
        import grpc

        from ._pb import decisions_pb2

        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            self._channel = grpc.aio.insecure_channel(
                self.target,
                options=[("grpc.initial_reconnect_backoff_ms", 500), ("grpc.max_reconnect_backoff_ms", 5000)],
            )
            self._call = self._channel.unary_stream(
                WATCH,
                request_serializer=decisions_pb2.WatchRequest.SerializeToString,
                response_deserializer=decisions_pb2.Decision.FromString,
            )
            self._messages = decisions_pb2
            ready.set()
            loop.run_forever()

        threading.Thread(target=serve, name="dunetrace-decisions", daemon=True).start()
        ready.wait(5)
        self._loop = loop
        return loop

    def watch(self, run: RunContext) -> None:
        """Watch the run until ``unwatch`` (never blocks on the network)."""
        with self._lock:
            if self._closed or time.monotonic() < self._unavailable_until:
                return
            loop = self._start()
            self._tasks[run.run_id] = asyncio.run_coroutine_threadsafe(self._watch(run), loop)

    def unwatch(self, run_id: str) -> None:
        with self._lock:
            task = self._tasks.pop(run_id, None)
        if task is not None:
            task.cancel()

    async def _watch(self, run: RunContext) -> None:
        import grpc

        request = self._messages.WatchRequest(run_id=run.run_id)
        try:
            async for decision in self._call(request, metadata=self._metadata, wait_for_ready=False):
                run._apply_decision(decision)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                return
            self._failed(f"{exc.code().name}: {exc.details()}")
        except Exception as exc:  # a decision we could not apply must not kill the watcher thread
            logger.debug("Dunetrace: watching run %s failed", run.run_id, exc_info=True)
            self._failed(type(exc).__name__)

    def _failed(self, why: str) -> None:
        self._unavailable_until = time.monotonic() + RETRY_AFTER_FAILURE_S
        if not self._warned:
            self._warned = True
            logger.warning(
                "Dunetrace: the sidecar's live decisions at %s are not available (%s); "
                "local policies keep working. Said once.",
                self.target,
                why,
            )

    def close(self, timeout: float = 2.0) -> None:
        with self._lock:
            self._closed = True
            tasks, self._tasks = list(self._tasks.values()), {}
            loop = self._loop
        for task in tasks:
            task.cancel()
        if loop is None:
            return
        if self._channel is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._channel.close(), loop).result(timeout)
            except Exception:
                logger.debug("Dunetrace: closing the decisions channel", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
