"""Throughput: the sidecar's full path against the null receiver, in the same run.

    python -m bench.throughput [--quick] [--rounds N] [--json FILE]

For each transport and round (interleaved, so machine noise hits both alike) a fresh null
receiver and a fresh sidecar (empty DuckDB file) each take the same pre-encoded requests
from several concurrent streams; a request counts once it is acknowledged (for the sidecar:
translated, hashed and committed). Reports spans/s, server CPU µs/span (the server's process and
its children: the sidecar's translation workers) and their ratio.
Transports: OTLP over gRPC and over HTTP, and ``ingest``: the same runs as the published
Dunetrace SDK's ``POST /v1/ingest`` batches on the API endpoint (bench/ingest_workload.py; two
events per span, so its spans/s are the OTLP spans' equivalents and events/s are twice that).
Two more rows are OTLP/gRPC again: ``grpc-thread`` with the sidecar translating on a thread of its
own process instead of in worker processes (receiver.translation_processes=0), and ``captures``
carrying the real agent stacks' captured runs (tests/testdata/stacks, replayed by
bench/captures_workload.py) instead of the bench's own mix. Every row is measured in each round,
one round after the other.
Traffic goes only to 127.0.0.1, bounded in count.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc

from bench.captures_workload import build_capture_workload
from bench.ingest_workload import API_KEY, IngestPost, ingest_groups
from bench.loadgen import rss_kb
from bench.workload import build_requests

ROOT = Path(__file__).resolve().parent.parent
_LISTEN = re.compile(r"listening (\w+)=(\S+)")
TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TRANSPORTS = ("grpc", "http", "ingest")  # the bench's own workload (bench/workload.py)
# Every row of this benchmark: ``captures`` is OTLP/gRPC carrying bench/captures_workload.py's
# requests; measure() takes it like ``grpc``, with whichever requests it is given.
# ``grpc-thread`` is OTLP/gRPC again with the sidecar translating on a thread of its own process
# (receiver.translation_processes=0, as before worker processes): the speedup they bring.
ROWS = (*TRANSPORTS, "grpc-thread", "captures")
GRPC_ROWS = ("grpc", "grpc-thread", "captures")
ROW_ENV = {"grpc-thread": {"DUNETRACE_TRANSLATION_PROCESSES": "0"}}
T = TypeVar("T")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    addresses: dict[str, str]
    workdir: tempfile.TemporaryDirectory[str]

    def pids(self) -> list[int]:
        """The server and its child processes (the sidecar's translation workers)."""
        return [self.process.pid, *children(self.process.pid)]

    def cpu_seconds(self) -> float:
        """User and system CPU of the server and its children, alive ones included."""
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def rss_kb(self) -> int:
        """Resident memory of the server and its children (shared library pages count in each)."""
        return sum(rss_kb(pid) for pid in self.pids())

    def gauge(self, name: str) -> float:
        """One unlabelled gauge from the daemon's /metrics."""
        with urllib.request.urlopen(f"http://{self.addresses['api']}/metrics", timeout=10) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise KeyError(name)

    def stop(self) -> int:
        """Stop gracefully (the store checkpoints); returns the store's size on disk in bytes."""
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        size = sum(p.stat().st_size for p in Path(self.workdir.name).glob("bench.duckdb*"))
        self.workdir.cleanup()
        return size


def children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def start(kind: str, extra_env: dict[str, str] | None = None) -> Server:
    workdir = tempfile.TemporaryDirectory(prefix=f"bench-{kind}-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUNETRACE_")}
    env.update(
        {
            "DUNETRACE_OTLP_GRPC_ENDPOINT": "127.0.0.1:0",
            "DUNETRACE_OTLP_HTTP_ENDPOINT": "127.0.0.1:0",
            "DUNETRACE_API_ENDPOINT": "127.0.0.1:0",
            "DUNETRACE_DB_PATH": str(Path(workdir.name) / "bench.duckdb"),
            "DUNETRACE_LOG_LEVEL": "info",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra_env or {})
    module = "dunetrace_sidecar" if kind == "sidecar" else "bench.null_receiver"
    log_path = Path(workdir.name) / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", module], cwd=workdir.name, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if " ready" in text or "\nready" in text or text.startswith("ready"):
            break
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited: {text}")
        time.sleep(0.05)
    else:
        raise RuntimeError(f"{kind} did not start: {text}")
    return Server(process, dict(_LISTEN.findall(text)), workdir)


def send_grpc(target: str, requests: list[bytes], streams: int) -> None:
    def worker(chunk: list[bytes]) -> None:
        with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]) as channel:
            call = channel.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)
            for body in chunk:
                for _attempt in range(50):  # bounded retries on backpressure
                    try:
                        call(body, timeout=60)
                        break
                    except grpc.RpcError as exc:
                        if exc.code() != grpc.StatusCode.UNAVAILABLE:
                            raise
                        time.sleep(0.05)

    _fan_out(worker, requests, streams)


def send_http(address: str, requests: list[bytes], streams: int) -> None:
    host, port = address.rsplit(":", 1)

    def worker(chunk: list[bytes]) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            for body in chunk:
                for _attempt in range(50):
                    conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
                    response = conn.getresponse()
                    response.read()
                    if response.status == 200:
                        break
                    if response.status not in (429, 503):
                        raise RuntimeError(f"HTTP {response.status}")
                    time.sleep(0.05)
        finally:
            conn.close()

    _fan_out(worker, requests, streams)


def send_ingest(address: str, groups: list[list[IngestPost]], streams: int) -> None:
    """Each stream is one agent process's drain thread: its groups' posts in order, each on a
    connection of its own (the SDK's urllib sends ``Connection: close``)."""
    host, port = address.rsplit(":", 1)

    def worker(chunk: list[list[IngestPost]]) -> None:
        for group in chunk:
            for post in group:
                for _attempt in range(50):
                    conn = http.client.HTTPConnection(host, int(port), timeout=60)
                    try:
                        conn.request("POST", "/v1/ingest", body=post.body, headers=post.headers)
                        response = conn.getresponse()
                        answer = response.read()
                    finally:
                        conn.close()
                    if response.status == 200:
                        counts = json.loads(answer)
                        if counts["accepted"] + counts["ignored"] != post.events:
                            raise RuntimeError(f"{post.events} events sent, answer {counts}")
                        break
                    if response.status not in (429, 503):
                        raise RuntimeError(f"HTTP {response.status}: {answer[:200]!r}")
                    time.sleep(0.05)

    _fan_out(worker, groups, streams)


def _fan_out(worker: Callable[[list[T]], None], requests: list[T], streams: int) -> None:
    errors: list[BaseException] = []

    def run(chunk: list[T]) -> None:
        try:
            worker(chunk)
        except BaseException as exc:  # surfaced after join
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(requests[i::streams],)) for i in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def measure(
    kind: str,
    transport: str,
    requests: list[bytes],
    spans: int,
    streams: int,
    ingest: list[list[IngestPost]] | None = None,
) -> tuple[float, float, int]:
    """(spans/s, server CPU µs per span, store bytes on disk) for one fresh server. For the
    ``ingest`` transport, ``ingest`` is ``ingest_groups(requests)`` (built here when not given);
    ``captures`` is sent as ``grpc`` is (pass it the captures workload's requests)."""
    posts = (ingest or ingest_groups(requests)) if transport == "ingest" else []
    env = {**ROW_ENV.get(transport, {}), **({"DUNETRACE_API_KEYS": API_KEY} if posts else {})}
    server = start(kind, env)
    try:
        if transport in GRPC_ROWS:
            # Warm up the channel and the server's code paths with one request of its own.
            send_grpc(server.addresses["otlp_grpc"], requests[:1], 1)
        elif posts:
            send_ingest(server.addresses["api"], posts[:1], 1)  # likewise: the first request's runs
        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        body = requests[1:]
        if transport in GRPC_ROWS:
            send_grpc(server.addresses["otlp_grpc"], body, streams)
        elif posts:
            send_ingest(server.addresses["api"], posts[1:], streams)
        else:
            send_http(server.addresses["otlp_http"], body, streams)
        elapsed = time.perf_counter() - t0
        cpu = server.cpu_seconds() - cpu0
    finally:
        stored = server.stop()
    sent = spans * len(body) / len(requests)
    return sent / elapsed, cpu / sent * 1e6, stored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, smaller rounds (under a minute)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--requests", type=int, default=None, help="requests per round (512 spans each)")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    args = parser.parse_args(argv)
    rows = [row for row in args.rows.split(",") if row]
    if unknown := set(rows) - set(ROWS):
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    rounds = args.rounds or (1 if args.quick else 3)
    n_requests = args.requests or (12 if args.quick else 40)
    requests, spans = build_requests(n_requests)
    ingest = ingest_groups(requests)
    posts = [post for group in ingest for post in group]
    captures = build_capture_workload(n_requests)
    print(
        f"workload: {n_requests} requests, {spans} spans, {sum(map(len, requests)) / spans:.0f} bytes/span; "
        f"ingest: {len(posts)} posts, {sum(p.events for p in posts)} events, "
        f"{sum(len(p.body) for p in posts) / spans:.0f} bytes/span",
        flush=True,
    )
    print(captures.summary(), flush=True)
    workloads = {transport: (requests, spans) for transport in TRANSPORTS}
    workloads["grpc-thread"] = (requests, spans)
    workloads["captures"] = (captures.requests, captures.spans)

    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(rounds):
        for transport in rows:
            row_requests, row_spans = workloads[transport]
            for kind in ("null", "sidecar"):
                rate, cpu, _ = measure(kind, transport, row_requests, row_spans, args.streams, ingest)
                row = results.setdefault(f"{transport}/{kind}", {"spans_per_s": [], "cpu_us_per_span": []})
                row["spans_per_s"].append(rate)
                row["cpu_us_per_span"].append(cpu)
                print(f"  {transport:6} {kind:7} {rate:9.0f} spans/s  {cpu:6.1f} µs/span", flush=True)

    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| transport | null spans/s | sidecar spans/s | ratio (median) | ratio min–max | sidecar CPU µs/span |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for transport in rows:
        null = results[f"{transport}/null"]["spans_per_s"]
        side = results[f"{transport}/sidecar"]["spans_per_s"]
        ratios = [s / n for s, n in zip(side, null, strict=True)]
        cpu = statistics.median(results[f"{transport}/sidecar"]["cpu_us_per_span"])
        summary[transport] = {"null": null, "sidecar": side, "ratios": ratios, "sidecar_cpu_us_per_span": cpu}
        print(
            f"| {transport} | {statistics.median(null):.0f} | {statistics.median(side):.0f} | "
            f"{statistics.median(ratios):.2f} | {min(ratios):.2f}–{max(ratios):.2f} | {cpu:.0f} |"
        )
    print("(ingest: spans/s are the OTLP spans' equivalents, 2 SDK events each; CPU per event is half)")
    print("(captures: OTLP/gRPC carrying the real agent stacks' runs, tests/testdata/stacks)")
    print("(grpc-thread: gRPC with translation on a thread of the sidecar's process, no worker processes)")
    if args.json:
        captured = {
            "requests": len(captures.requests),
            "spans": captures.spans,
            "bytes_per_span": sum(map(len, captures.requests)) / captures.spans,
            "runs": sum(captures.runs.values()),
            "stacks": captures.stacks,
            "runs_per_capture": dict(sorted(captures.runs.items())),
        }
        document = {"rounds": rounds, "spans": spans, "captures_workload": captured, "results": summary}
        Path(args.json).write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
