"""Where exports are translated: in worker processes, or on a thread of the daemon's process.

Translation (spans to facts, content to features and hashes: ``translate_request``,
``translate_logs`` and the SDK's ``parse_batch``) is most of the CPU an export costs, and a pure
function of the request and the hash key, so another process answers exactly as the daemon
would. One Python process is one core (the GIL); with worker processes the daemon keeps the
listeners, the open runs, the detectors, the policies and the store, and hands each request's
bytes to a worker, which returns the facts (content stays reduced at this boundary: only
features and hashes come back). Runs are still assembled in one place. Measured on a 2-core
machine: README "Performance"; the design beyond this step: docs/scaling.md.

A worker that dies (killed, out of memory) fails the exports it held with the retryable answer
(nothing of theirs was acknowledged; their senders retry) and the workers are started again.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TypeVar

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as pb_logs_service
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb_trace_service

from receiver.content import Hasher
from receiver.errors import WORKER_LOST, ReceiverError
from receiver.ingest import EncodedRequest
from receiver.sdk_ingest import SdkBatch, parse_batch
from receiver.spans import LogContent, TranslatedSpans, translate_logs, translate_request

log = logging.getLogger("dunetrace.translation")
T = TypeVar("T")
A = TypeVar("A")

# Past two workers the daemon's own process is the limit (its share of a span costs about as
# much as a worker's: docs/scaling.md), so more would only hold memory. Two on two CPUs rather
# than one: a single worker was then the limit (one-off runs on this 2-core machine).
MAX_AUTO_PROCESSES = 2


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPUs this process may use: its CPU affinity, lowered by a cgroup v2 quota (a
    container's CPU limit; 1.5 CPUs count as 1)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota readable: the affinity decides
    return cpus


def translation_processes(setting: int | None, cpus: int | None = None) -> int:
    """The worker processes to start: the setting, or for ``auto`` (None) one per CPU available, at
    most MAX_AUTO_PROCESSES, and none on one CPU (a worker would only add its overhead there)."""
    if setting is not None:
        return setting
    available = available_cpus() if cpus is None else cpus
    return 0 if available < 2 else min(available, MAX_AUTO_PROCESSES)


class Translator:
    def __init__(self, hasher: Hasher, processes: int, log_level: str = "info") -> None:
        self.processes = processes
        self._hasher = hasher
        self._log_level = log_level
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="translate") if processes == 0 else None
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the worker processes (none with ``processes=0``); before the first export."""
        if self.processes and self._pool is None:
            self._pool = self._start_pool()

    def _start_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the daemon has gRPC's and DuckDB's threads, which a fork would copy mid-flight.
        pool = ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self._hasher, self._log_level, os.getpid()),
        )
        for _ in range(self.processes):
            pool.submit(os.getpid)  # start the workers now (~0.5 s of imports), not on the first export
        return pool

    async def spans(self, request: EncodedRequest) -> TranslatedSpans:
        """Raises ReceiverError(BAD_DATA) for a request that does not decode, wherever it was read."""
        return await self._translate(translate_spans, request)

    async def logs(self, request: EncodedRequest) -> tuple[list[LogContent], int]:
        """(the gen_ai content the records carry, records dropped)."""
        return await self._translate(translate_log_request, request)

    async def sdk(self, body: bytes) -> SdkBatch:
        """Raises BatchInvalid for a body that is not a batch, wherever it was read."""
        return await self._translate(parse_batch, body)

    async def _translate(self, function: Callable[[A, Hasher], T], argument: A) -> T:
        loop = asyncio.get_running_loop()
        if self._thread is not None:
            return await loop.run_in_executor(self._thread, function, argument, self._hasher)
        pool = self._pool
        if pool is None:
            raise RuntimeError("Translator.start() was not called")
        try:
            return await loop.run_in_executor(pool, _in_worker, function, argument)
        except BrokenProcessPool:
            if self._pool is pool:  # the first export to learn of it starts new workers
                log.error("a translation worker process stopped; starting %d again", self.processes)
                pool.shutdown(wait=False, cancel_futures=True)
                try:
                    self._pool = self._start_pool()
                except OSError as exc:  # none could start (memory, a process limit): the next export tries
                    log.error("could not start translation workers: %s", type(exc).__name__)
            raise ReceiverError(WORKER_LOST, "a translation worker stopped; retry shortly") from None

    def close(self) -> None:
        """After the last export: stop the workers (or the thread)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)


# --- in the worker process ----------------------------------------------------------------

_hasher: Hasher | None = None
PARENT_CHECK_SECONDS = 0.5


def _start_worker(hasher: Hasher, log_level: str, daemon_pid: int) -> None:
    from dunetrace_sidecar.cli import configure_logging, tune_gc

    global _hasher
    _hasher = hasher
    # Ctrl-C reaches the whole process group: the daemon stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(log_level)
    # The daemon's pid from the daemon: it may have died before this worker got here.
    threading.Thread(target=_exit_with, args=(daemon_pid,), name="parent-watch", daemon=True).start()
    tune_gc()  # as the daemon does: translation allocates thousands of short-lived objects per export


def _exit_with(parent: int) -> None:
    """A daemon killed outright (SIGKILL, OOM) leaves its workers waiting on a queue they hold
    both ends of, for ever: they leave when their parent does."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def _in_worker(function: Callable[[A, Hasher], T], argument: A) -> T:
    assert _hasher is not None
    return function(argument, _hasher)


# --- what a worker (or the thread) runs ------------------------------------------------------


def translate_spans(request: EncodedRequest, hasher: Hasher) -> TranslatedSpans:
    return translate_request(request.decode(pb_trace_service.ExportTraceServiceRequest).resource_spans, hasher)


def translate_log_request(request: EncodedRequest, hasher: Hasher) -> tuple[list[LogContent], int]:
    return translate_logs(request.decode(pb_logs_service.ExportLogsServiceRequest).resource_logs, hasher)
