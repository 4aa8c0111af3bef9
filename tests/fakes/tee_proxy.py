"""OTLP/HTTP on 127.0.0.1 that keeps each request body (inflated) and forwards it to the daemon:
what our SDK actually sent, for the privacy checks."""

from __future__ import annotations

import gzip
import urllib.request
from http.server import BaseHTTPRequestHandler

from tests.fakes.local_server import LocalHTTPServer


class TeeProxy(LocalHTTPServer):
    """Started on creation; ``url`` is where the SDK exports, ``bodies`` what it sent."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.bodies: list[bytes] = []
        super().__init__("otlp-tee")
        self.url = f"http://127.0.0.1:{self.port}"
        self.start()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "content-encoding")}
                proxy.bodies.append(gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body)
                request = urllib.request.Request(proxy.target + self.path, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=10) as answer:
                    status, data = answer.status, answer.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
