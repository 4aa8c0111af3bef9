"""Alert latency: from a signal's commit to its webhook being received.

    python -m bench.alert_latency [--quick]

A local webhook receiver (127.0.0.1) records arrival times; probe runs (a tool loop each, fresh
ids) are exported one at a time; the signal is committed before the export returns, so
"export returned → received" bounds commit → receipt from above. Also reported: the signal's
``detected_at`` (taken just before the commit) → received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import threading
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

import grpc
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import throughput
from bench.detection_latency import percentile

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "testdata" / "otlp" / "openllmetry-openai-toolloop.pb"


class Receiver(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.arrivals: dict[str, tuple[float, int]] = {}  # signal id → (perf_counter, wall ns)
        self.port = 0
        self.ready = threading.Event()

    def run(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            body = json.loads(await request.read())
            self.arrivals[body["signal"]["signal_id"]] = (time.perf_counter(), time.time_ns())
            return web.Response(text="ok")

        async def main() -> None:
            app = web.Application()
            app.router.add_post("/hook", hook)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self.ready.set()
            await asyncio.Event().wait()

        asyncio.run(main())


def probe(rng_seed: int) -> tuple[bytes, str]:
    request = ExportTraceServiceRequest.FromString(FIXTURE.read_bytes())
    trace_id = uuid.UUID(int=rng_seed + (1 << 100)).bytes
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                span.trace_id = trace_id
    return request.SerializeToString(), str(uuid.UUID(bytes=trace_id))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    probes = 20 if args.quick else 100
    receiver = Receiver()
    receiver.start()
    receiver.ready.wait(10)
    os.environ["WEBHOOK_URL"] = f"http://127.0.0.1:{receiver.port}/hook"
    server = throughput.start("sidecar")
    after_export: list[float] = []
    after_detect: list[float] = []
    try:
        with grpc.insecure_channel(server.addresses["otlp_grpc"]) as channel:
            call = channel.unary_unary(throughput.TRACE_METHOD, request_serializer=None, response_deserializer=None)
            api = f"http://{server.addresses['api']}"
            for i in range(probes):
                body, run_id = probe(i)
                call(body, timeout=30)
                returned = time.perf_counter()
                deadline = returned + 10
                signal_id = None
                while time.perf_counter() < deadline:
                    with urllib.request.urlopen(f"{api}/v1/signals?run_id={run_id}", timeout=10) as reply:
                        signals = json.loads(reply.read())["signals"]
                    if signals:
                        signal_id = signals[0]["signal_id"]
                        detected = signals[0]["detected_at"]
                        break
                    time.sleep(0.002)
                while signal_id and signal_id not in receiver.arrivals and time.perf_counter() < deadline:
                    time.sleep(0.001)
                if signal_id and signal_id in receiver.arrivals:
                    arrived_perf, arrived_ns = receiver.arrivals[signal_id]
                    after_export.append((arrived_perf - returned) * 1000)
                    detected_ns = int(datetime.fromisoformat(detected.replace("Z", "+00:00")).timestamp() * 1e9)
                    after_detect.append((arrived_ns - detected_ns) / 1e6)
                time.sleep(0.02)
    finally:
        server.stop()
        os.environ.pop("WEBHOOK_URL", None)
    print(f"machine: {platform.machine()}, Python {platform.python_version()}; {len(after_export)}/{probes} delivered")
    print("| measured from | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|")
    for label, values in (("export returned (after commit)", after_export), ("signal detected_at", after_detect)):
        print(
            f"| {label} → webhook received | {percentile(values, 0.5):.1f} | {percentile(values, 0.99):.1f} "
            f"| {max(values):.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
