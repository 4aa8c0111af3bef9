"""OTLP capture receiver: accepts OTLP/HTTP and OTLP/gRPC exports, answers success, stores every body.

Listens on
  OTLP/HTTP  POST /v1/traces, /v1/logs, /v1/metrics  (application/x-protobuf or application/json;
             Content-Encoding gzip / deflate / identity)
  OTLP/gRPC  opentelemetry.proto.collector.{trace,logs,metrics}.v1.{Trace,Logs,Metrics}Service/Export
             (grpcio undoes grpc-encoding gzip itself; the handler gets the raw message bytes, no parsing)

Every request is written, decompressed but otherwise byte-for-byte as received, to
  OUT/NNNN-<signal>-<transport>.<pb|json|bin>
and described by one line in OUT/index.jsonl (written in arrival order, under one lock shared by both
transports):
  seq, recv_unix_ns, recv_monotonic_ns, signal, transport, path/method, content_type,
  content_encoding (HTTP) / grpc_encoding (gRPC), wire_bytes, body_bytes, sha256 (of the stored body),
  parse_ok (did the body parse as the expected message / as JSON), user_agent, file.

Answers: HTTP 200 with an empty Export*ServiceResponse (protobuf) or "{}" (JSON); gRPC OK with an
empty response message. Bodies it cannot decompress are stored as received and answered 400;
unknown content types are stored and answered 415.

Extra endpoint: GET /_capture/status -> {"count": N, "last_recv_unix_ns": ...} (for a driver that waits
for the exporters to go quiet).

usage: python otlp_capture.py --out DIR [--host 127.0.0.1] [--http-port 27318] [--grpc-port 27317]
"""

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import signal
import threading
import time
import zlib
from concurrent import futures

import grpc
from aiohttp import web
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

REQ = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
}
RESP = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
}
GRPC_METHODS = {
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export": "traces",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export": "logs",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export": "metrics",
}


class Store:
    def __init__(self, out):
        self.out = out
        os.makedirs(out, exist_ok=True)
        self.lock = threading.Lock()
        self.seq = 0
        self.last_ns = None
        self.index = open(os.path.join(out, "index.jsonl"), "a", buffering=1)

    def save(self, body: bytes, meta: dict) -> int:
        with self.lock:
            self.seq += 1
            now = time.time_ns()
            self.last_ns = now
            kind = meta.get("body_format", "bin")
            ext = {"protobuf": "pb", "json": "json"}.get(kind, "bin")
            fname = f"{self.seq:04d}-{meta['signal']}-{meta['transport']}.{ext}"
            with open(os.path.join(self.out, fname), "wb") as f:
                f.write(body)
            rec = {
                "seq": self.seq,
                "recv_unix_ns": now,
                "recv_monotonic_ns": time.monotonic_ns(),
                **meta,
                "body_bytes": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "file": fname,
            }
            self.index.write(json.dumps(rec, sort_keys=True) + "\n")
            return self.seq


def check_parse(signal_name: str, fmt: str, body: bytes) -> bool:
    try:
        if fmt == "protobuf":
            REQ[signal_name]().ParseFromString(body)
        elif fmt == "json":
            json.loads(body)
        else:
            return False
        return True
    except Exception:
        return False


# ------------------------------------------------------------------------------------------ HTTP
def make_http_app(store: Store) -> web.Application:
    async def export(request: web.Request) -> web.Response:
        signal_name = request.match_info["signal"]
        wire = await request.read()  # auto_decompress is off: these are the bytes on the wire
        ctype_full = request.headers.get("Content-Type", "")
        ctype = ctype_full.split(";")[0].strip().lower()
        enc = request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
        fmt = (
            "protobuf"
            if ctype in ("application/x-protobuf", "application/protobuf")
            else ("json" if ctype == "application/json" else "unknown")
        )
        status, body, err = 200, wire, None
        try:
            if enc == "gzip":
                body = gzip.decompress(wire)
            elif enc == "deflate":
                try:
                    body = zlib.decompress(wire)
                except zlib.error:
                    body = zlib.decompress(wire, -zlib.MAX_WBITS)
            elif enc not in ("identity", ""):
                status, err = 415, f"unsupported Content-Encoding {enc}"
        except Exception as e:  # store as received, answer 400
            status, err, body = 400, f"cannot decompress: {e}", wire
        if status == 200 and fmt == "unknown":
            status, err = 415, f"unsupported Content-Type {ctype_full!r}"
        meta = {
            "signal": signal_name,
            "transport": "http",
            "method": request.method,
            "path": request.path,
            "content_type": ctype_full,
            "content_encoding": enc,
            "body_format": fmt,
            "wire_bytes": len(wire),
            "parse_ok": check_parse(signal_name, fmt, body) if status == 200 else False,
            "user_agent": request.headers.get("User-Agent"),
            "http_status": status,
        }
        if err:
            meta["error"] = err
        store.save(body, meta)
        if status != 200:
            return web.json_response({"code": 3, "message": err}, status=status)
        if fmt == "json":
            return web.Response(body=b"{}", content_type="application/json")
        return web.Response(body=RESP[signal_name]().SerializeToString(), content_type="application/x-protobuf")

    async def status(_request):
        return web.json_response({"count": store.seq, "last_recv_unix_ns": store.last_ns})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/{signal:traces|logs|metrics}", export)
    app.router.add_get("/_capture/status", status)
    return app


# ------------------------------------------------------------------------------------------ gRPC
class RawHandler(grpc.GenericRpcHandler):
    """Serves the three Export methods with identity (de)serializers, so the stored bytes are the message
    exactly as received (after grpc-encoding decompression, which grpcio performs)."""

    def __init__(self, store: Store):
        self.store = store

    def service(self, handler_call_details):
        signal_name = GRPC_METHODS.get(handler_call_details.method)
        if signal_name is None:
            return None
        store = self.store

        def export(request_bytes, context):
            md = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
            meta = {
                "signal": signal_name,
                "transport": "grpc",
                "method": handler_call_details.method,
                "content_type": md.get("content-type", "application/grpc"),
                "grpc_encoding": md.get("grpc-encoding"),  # None: grpcio strips it from the metadata it exposes
                "body_format": "protobuf",
                "wire_bytes": None,  # grpcio does not expose the compressed size
                "parse_ok": check_parse(signal_name, "protobuf", request_bytes),
                "user_agent": md.get("user-agent"),
            }
            store.save(request_bytes, meta)
            return RESP[signal_name]().SerializeToString()

        return grpc.unary_unary_rpc_method_handler(export, request_deserializer=None, response_serializer=None)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--http-port", type=int, default=27318)
    ap.add_argument("--grpc-port", type=int, default=27317)
    a = ap.parse_args()
    store = Store(a.out)

    gserver = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    )
    gserver.add_generic_rpc_handlers((RawHandler(store),))
    gserver.add_insecure_port(f"{a.host}:{a.grpc_port}")
    gserver.start()

    runner = web.AppRunner(make_http_app(store), auto_decompress=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, a.host, a.http_port)
    await site.start()
    with open(os.path.join(a.out, "receiver.ready"), "w") as f:
        f.write(json.dumps({"pid": os.getpid(), "http": f"{a.host}:{a.http_port}", "grpc": f"{a.host}:{a.grpc_port}"}))
    print(f"[capture] http {a.host}:{a.http_port} grpc {a.host}:{a.grpc_port} -> {a.out}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    gserver.stop(grace=1).wait()
    await runner.cleanup()
    store.index.close()
    print(f"[capture] stopped after {store.seq} requests", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
