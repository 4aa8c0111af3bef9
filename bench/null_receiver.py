"""The floor: an OTLP receiver on the same servers (grpc.aio, aiohttp) that fully parses
every request and stores nothing; likewise the Dunetrace SDK's ``POST /v1/ingest`` on an API
listener of its own, as the sidecar has it (the JSON body parsed whole, answered with the
sidecar's counts). ``python -m bench.null_receiver`` logs its addresses like the sidecar does."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import grpc
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
OK = ExportTraceServiceResponse().SerializeToString()


async def _grpc_export(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
    ExportTraceServiceRequest.FromString(body)
    return OK


async def _http_export(request: web.Request) -> web.Response:
    ExportTraceServiceRequest.FromString(await request.read())
    return web.Response(body=OK, content_type="application/x-protobuf")


async def _ingest(request: web.Request) -> web.Response:
    document = json.loads(await request.read())
    events = document["events"] if isinstance(document, dict) else None
    if not isinstance(events, list):
        return web.json_response({"error": "invalid_batch"}, status=400)
    accepted = sum(isinstance(event, dict) for event in events)
    answer = {"accepted": accepted, "ignored": 0, "skipped": len(events) - accepted}
    return web.Response(body=json.dumps(answer, separators=(",", ":")).encode(), content_type="application/json")


async def _serve(app: web.Application) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)])
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(_grpc_export)})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", _http_export)
    api = web.Application(client_max_size=64 * 1024 * 1024)
    api.router.add_post("/v1/ingest", _ingest)
    runners = [await _serve(app), await _serve(api)]
    http_port, api_port = (runner.addresses[0][1] for runner in runners)
    logging.info("listening otlp_grpc=127.0.0.1:%d", port)
    logging.info("listening otlp_http=127.0.0.1:%d", http_port)
    logging.info("listening api=127.0.0.1:%d", api_port)
    logging.info("ready")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
