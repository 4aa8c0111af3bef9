"""Admission control: what the OTLP receivers hold in flight, bounded on both transports.

A request is admitted before its body is read (HTTP: its Content-Length, or the body limit when
it is chunked) or processed (gRPC: the message grpc has read), and released when it is
answered. Past either bound the request is refused at once with the retryable answer (HTTP
503 + Retry-After, gRPC UNAVAILABLE + RetryInfo), so an overload costs the daemon a refusal,
not memory: the exporters back off and retry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from receiver.errors import BUSY, ReceiverError


@dataclass(slots=True)
class Admission:
    max_requests: int
    max_bytes: int
    requests: int = 0
    bytes: int = 0

    @contextmanager
    def admit(self, nbytes: int) -> Iterator[Callable[[int], None]]:
        """Hold ``nbytes`` and one request slot for the block; refuse when either is full.
        The block may ``grow`` what it holds (a compressed body, once inflated), with the same
        refusal. A request alone is always admitted, however large (its size is bounded by the
        body limit). (Single-threaded: only the event loop calls this.)"""
        if self.requests >= self.max_requests or (self.bytes and self.bytes + nbytes > self.max_bytes):
            raise ReceiverError(BUSY, "the sidecar is busy; retry after the delay")
        self.requests += 1
        self.bytes += nbytes
        held = nbytes

        def grow(more: int) -> None:
            nonlocal held
            if self.bytes > held and self.bytes + more > self.max_bytes:
                raise ReceiverError(BUSY, "the sidecar is busy; retry after the delay")
            self.bytes += more
            held += more

        try:
            yield grow
        finally:
            self.requests -= 1
            self.bytes -= held
