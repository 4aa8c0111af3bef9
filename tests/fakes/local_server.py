"""The lifecycle every fake HTTP server of the tests shares: a threaded server on 127.0.0.1:0,
started and closed once, usable as a context manager. A fake gives its request handler."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LocalHTTPServer(ABC):
    def __init__(self, name: str) -> None:
        handler = self._handler_class()
        # Headers and body leave in two writes; with Nagle's algorithm the second waits for the
        # client's delayed ACK of the first, and every answer took 40 ms more.
        handler.disable_nagle_algorithm = True
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"fake-{name}", daemon=True)

    @abstractmethod
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        """The request handler, built by the fake (it closes over the fake)."""

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])
