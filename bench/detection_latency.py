"""Detection latency: from the export that carries the proving span returning success to the
signal being visible on ``GET /v1/signals``, at light load and near saturation.

    python -m bench.detection_latency [--quick]

1. Measure the sidecar's maximum sustained rate: unthrottled load over OTLP/gRPC.
2. For each load level (a share of that maximum), keep background load running at that rate
   and send probe runs: a tool loop's first spans, then the span that proves TOOL_LOOP (the
   third identical tool call) in its own export, no root span (the run is still live). Time
   from that export returning until the signal is listed, polling the API.
Traffic goes only to 127.0.0.1, bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import random
import statistics
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from bench.throughput import TRACE_METHOD, send_grpc, start
from bench.workload import RunShape, build_requests, build_run


def probe_requests(rng: random.Random) -> tuple[bytes, bytes, str]:
    """(setup request, proving request, run id) of a looping run without its root."""
    spans = build_run(
        rng, RunShape(steps=8, legacy_keys=False, loop=True, tool_fails=False, truncates=False), time.time_ns()
    )
    children = sorted((s for s in spans if s.parent_span_id), key=lambda s: s.end_time_unix_nano)
    # LLM, tool, LLM, tool, LLM | tool (the third lookup_order call proves the loop)
    setup, proving = children[:5], children[5:6]

    def request(items: list[Span]) -> bytes:
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = "latency-probe"
        ss = rs.scope_spans.add()
        ss.spans.extend(items)
        return req.SerializeToString()

    return request(setup), request(proving), str(uuid.UUID(bytes=spans[0].trace_id))


def max_rate(target: str, requests: list[bytes], spans_per_request: float, streams: int) -> float:
    t0 = time.perf_counter()
    send_grpc(target, requests, streams)
    return len(requests) * spans_per_request / (time.perf_counter() - t0)


class Background(threading.Thread):
    """Sends pre-encoded requests at a fixed span rate until stopped (bounded by the pool)."""

    def __init__(self, target: str, pool: list[bytes], spans_per_request: float, rate: float) -> None:
        super().__init__(daemon=True)
        self.target, self.pool = target, pool
        self.interval = spans_per_request / rate if rate > 0 else None
        self.stop_event = threading.Event()
        self.sent = 0

    def run(self) -> None:
        if self.interval is None:
            return
        with grpc.insecure_channel(self.target) as channel:
            call = channel.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)
            next_at = time.perf_counter()
            for body in self.pool:
                if self.stop_event.is_set():
                    return
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                with contextlib.suppress(grpc.RpcError):  # refused under pressure: the probe still measures
                    call(body, timeout=60)
                self.sent += 1
                next_at += self.interval


def measure_level(api: str, target: str, probes: int, rng: random.Random) -> tuple[list[float], list[float]]:
    """(export-returned → signal listed, proving export's round trip), in ms."""
    latencies: list[float] = []
    round_trips: list[float] = []
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)
        for _ in range(probes):
            setup, proving, run_id = probe_requests(rng)
            call(setup, timeout=60)
            sent = time.perf_counter()
            call(proving, timeout=60)
            t0 = time.perf_counter()
            round_trips.append((t0 - sent) * 1000)
            url = f"{api}/v1/signals?run_id={run_id}&failure_type=TOOL_LOOP"
            deadline = t0 + 10
            while time.perf_counter() < deadline:
                with urllib.request.urlopen(url, timeout=10) as response:
                    if json.loads(response.read())["signals"]:
                        latencies.append((time.perf_counter() - t0) * 1000)
                        break
                time.sleep(0.002)
            else:
                latencies.append(float("inf"))
            time.sleep(0.02)
    return latencies, round_trips


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    probes = 20 if args.quick else 100
    levels = (0.0, 0.5, 0.9)
    pool, spans = build_requests(30 if args.quick else 80, spans_per_request=128)
    per_request = spans / len(pool)
    rng = random.Random(11)
    server = start("sidecar")
    results: dict[str, dict[str, float]] = {}
    try:
        target = server.addresses["otlp_grpc"]
        api = f"http://{server.addresses['api']}"
        maximum = max_rate(target, pool[: len(pool) // 2], per_request, 4)
        print(f"max sustained: {maximum:.0f} spans/s", flush=True)
        load_pool, _ = build_requests(400 if args.quick else 2000, spans_per_request=128, seed=99)
        for level in levels:
            background = Background(target, load_pool, per_request, maximum * level)
            background.start()
            time.sleep(1.0 if level else 0)
            sent_before, t0 = background.sent, time.perf_counter()
            latencies, round_trips = measure_level(api, target, probes, rng)
            achieved = (background.sent - sent_before) * per_request / (time.perf_counter() - t0)
            background.stop_event.set()
            background.join()
            key = f"{round(level * 100)}%"
            results[key] = {
                "p50_ms": round(percentile(latencies, 0.5), 1),
                "p99_ms": round(percentile(latencies, 0.99), 1),
                "max_ms": round(max(latencies), 1),
                "mean_ms": round(statistics.fmean(latencies), 1),
                "export_rtt_p50_ms": round(percentile(round_trips, 0.5), 1),
                "export_rtt_p99_ms": round(percentile(round_trips, 0.99), 1),
                "offered_spans_per_s": round(maximum * level),
                "achieved_spans_per_s": round(achieved),
            }
            print(f"  load {key:>4}: p50 {results[key]['p50_ms']} ms, p99 {results[key]['p99_ms']} ms", flush=True)
    finally:
        server.stop()
    print()
    print(f"machine: {platform.machine()}, Python {platform.python_version()}; {probes} probes per level")
    print(
        "| load (share of max) | offered spans/s | achieved spans/s | ack→listed p50 ms | ack→listed p99 ms "
        "| max ms | proving export p50 / p99 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for key, row in results.items():
        print(
            f"| {key} | {row['offered_spans_per_s']} | {row['achieved_spans_per_s']} | {row['p50_ms']} | "
            f"{row['p99_ms']} | {row['max_ms']} | {row['export_rtt_p50_ms']} / {row['export_rtt_p99_ms']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"max_spans_per_s": maximum, "levels": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
