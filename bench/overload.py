"""Overload: many concurrent exporters against the daemon's admission control.

    python -m bench.overload [--quick] [--seconds S] [--json FILE]

For each level (1x, 4x, 16x and 64x ``receiver.max_inflight_requests``, which is set to 4 so
64x is 256 exporters) a fresh daemon takes exporters for a bounded time: half OTLP/HTTP
protobuf, half raw OTLP/gRPC, each sending realistic runs and retrying refusals as the OTel
exporters do (after the delay the daemon asks for: Retry-After, RetryInfo; else exponential
backoff). Reported per level: acknowledged throughput, the share of attempts refused (by
reason), /healthz latency sampled throughout, peak RSS, and whether every acknowledged span is
in the store (the daemon stopped gracefully, its DuckDB file opened read-only). Ratios are
against baselines measured in the same run: throughput ÷ the 1x level's, /healthz latency ÷
the unloaded /healthz p50 of the same daemon just before its load. Only 127.0.0.1 traffic.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.loadgen import (
    ROOT,
    Daemon,
    GrpcExporter,
    HttpExporter,
    Ledger,
    Outcome,
    Trace,
    backoff,
    export_request,
    percentile,
    random_trace,
    rss_kb,
    verify,
)

MAX_INFLIGHT = 4
LEVELS = (1, 4, 16, 64)
TEMPLATES = 64
TRACES_PER_EXPORT = 2


@dataclass(frozen=True, slots=True)
class Template:
    """A pre-encoded export; each send gets fresh trace ids by replacing the template's bytes
    (the exporters' CPU is then spent on sockets, not on building spans)."""

    body: bytes
    traces: tuple[Trace, ...]

    def fresh(self, rng: random.Random) -> tuple[bytes, list[Trace]]:
        body = self.body
        traces = []
        for trace in self.traces:
            new_id = rng.randbytes(16)
            body = body.replace(trace.spans[0].trace_id, new_id)
            traces.append(Trace(tuple(replace(s, trace_id=new_id) for s in trace.spans), trace.loop, trace.errors))
        return body, traces


def templates(seed: int = 11) -> list[Template]:
    rng = random.Random(seed)
    out = []
    for _ in range(TEMPLATES):
        traces = tuple(random_trace(rng) for _ in range(TRACES_PER_EXPORT))
        out.append(Template(export_request([s for t in traces for s in t.spans]).SerializeToString(), traces))
    return out


@dataclass
class Level:
    exporters: int
    seconds: float
    ledger: Ledger = field(default_factory=Ledger)
    health_ms: list[float] = field(default_factory=list)
    health_failures: int = 0
    rss_mb: list[float] = field(default_factory=list)


def _sender(index: int, daemon: Daemon) -> tuple[Callable[[bytes], Outcome], Callable[[], None]]:
    """Odd exporters speak raw OTLP/gRPC, even ones OTLP/HTTP protobuf: (send, close)."""
    if index % 2:
        grpc = GrpcExporter(daemon.address("otlp_grpc"))
        return grpc.send_bytes, grpc.close
    http = HttpExporter(daemon.address("otlp_http"), "protobuf")
    return (lambda body: http.post(body, {"Content-Type": "application/x-protobuf"})), http.close


def _exporter(index: int, daemon: Daemon, pool: list[Template], level: Level, stop: float) -> None:
    """Send fresh runs until ``stop``, each retried after refusals until acknowledged."""
    rng = random.Random(index)
    send, close = _sender(index, daemon)
    try:
        while time.monotonic() < stop:
            body, traces = rng.choice(pool).fresh(rng)
            spans = [s for t in traces for s in t.spans]
            attempt = 0
            while time.monotonic() < stop:
                level.ledger.attempt(spans)
                outcome = send(body)
                level.ledger.outcome(spans, outcome)
                if outcome.acked:
                    for trace in traces:
                        level.ledger.plan(trace)
                    break
                time.sleep(min(backoff(attempt, outcome.delay, rng), max(stop - time.monotonic(), 0)))
                attempt += 1
    finally:
        close()


def _health_ms(conn: http.client.HTTPConnection) -> float | None:
    started = time.perf_counter()
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException):
        conn.close()
        return None
    return (time.perf_counter() - started) * 1000 if response.status == 200 else None


def _watch(daemon: Daemon, level: Level, stop: float) -> None:
    """/healthz every 50 ms on a keep-alive connection; RSS every 250 ms."""
    host, port = daemon.address("api").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    last_rss = 0.0
    while time.monotonic() < stop:
        ms = _health_ms(conn)
        if ms is None:
            level.health_failures += 1
        else:
            level.health_ms.append(ms)
        if time.monotonic() - last_rss >= 0.25 and daemon.pid:
            level.rss_mb.append(rss_kb(daemon.pid) / 1024)
            last_rss = time.monotonic()
        time.sleep(0.05)
    conn.close()


def unloaded_health(daemon: Daemon, samples: int = 40) -> list[float]:
    host, port = daemon.address("api").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    out = []
    for _ in range(samples):
        ms = _health_ms(conn)
        if ms is not None:
            out.append(ms)
        time.sleep(0.02)
    conn.close()
    return out


def run_level(multiple: int, seconds: float, pool: list[Template], source: Path = ROOT) -> dict[str, Any]:
    level = Level(MAX_INFLIGHT * multiple, seconds)
    with tempfile.TemporaryDirectory(prefix="bench-overload-") as tmp:
        daemon = Daemon(Path(tmp), {"DUNETRACE_MAX_INFLIGHT_REQUESTS": str(MAX_INFLIGHT)}, source)
        try:
            daemon.start()
            idle = unloaded_health(daemon)
            rss_idle = rss_kb(daemon.pid or 0) / 1024
            started = time.monotonic()
            stop = started + seconds
            threads = [
                threading.Thread(target=_exporter, args=(i, daemon, pool, level, stop)) for i in range(level.exporters)
            ]
            threads.append(threading.Thread(target=_watch, args=(daemon, level, stop)))
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=seconds + 60)
            elapsed = time.monotonic() - started
            exit_code = daemon.stop()
            verification = verify(daemon.db_path, level.ledger)
        finally:
            daemon.close()
    return _summary(level, multiple, elapsed, idle, rss_idle, exit_code, verification.summary())


def _summary(
    level: Level,
    multiple: int,
    elapsed: float,
    idle: list[float],
    rss_idle: float,
    exit_code: int,
    verification: dict[str, Any],
) -> dict[str, Any]:
    counts = level.ledger.counts
    attempts = counts["exports sent"]
    acked_spans = len(level.ledger.acked)
    health = level.health_ms
    return {
        "multiple": multiple,
        "exporters": level.exporters,
        "seconds": round(elapsed, 1),
        "attempts": attempts,
        "acknowledged": counts["exports acknowledged"],
        "acked_spans_per_s": acked_spans / elapsed,
        "refusal_share": counts["exports refused"] / attempts if attempts else 0.0,
        "refused_by_reason": dict(level.ledger.refused.most_common()),
        "healthz_unloaded_p50_ms": statistics.median(idle) if idle else float("nan"),
        "healthz_ms": {
            "p50": percentile(health, 50),
            "p99": percentile(health, 99),
            "max": max(health, default=float("nan")),
            "samples": len(health),
            "failures": level.health_failures,
        },
        "rss_mb": {"idle": rss_idle, "peak": max(level.rss_mb, default=0.0)},
        "graceful_exit_code": exit_code,
        "verification": verification,
    }


def bench(quick: bool, seconds: float | None = None, source: Path = ROOT) -> dict[str, Any]:
    """Every level in turn; ratios against the 1x level and each daemon's unloaded /healthz."""
    seconds = seconds or (4.0 if quick else 15.0)
    pool = templates()
    levels = []
    for multiple in LEVELS:
        result = run_level(multiple, seconds, pool, source)
        levels.append(result)
        h = result["healthz_ms"]
        print(
            f"  overload {result['exporters']:3d} exporters: {result['acked_spans_per_s']:.0f} spans/s acknowledged, "
            f"{result['refusal_share']:.0%} refused, /healthz p99 {h['p99']:.1f} ms, "
            f"peak RSS {result['rss_mb']['peak']:.0f} MB, verified {result['verification']['ok']}",
            flush=True,
        )
    base = levels[0]["acked_spans_per_s"] or float("nan")
    for result in levels:
        result["throughput_ratio_vs_1x"] = result["acked_spans_per_s"] / base
        idle = result["healthz_unloaded_p50_ms"]
        result["healthz_p99_ratio_vs_unloaded"] = result["healthz_ms"]["p99"] / idle
    return {"max_inflight_requests": MAX_INFLIGHT, "seconds_per_level": seconds, "levels": levels}


def report_rows(results: dict[str, Any]) -> list[str]:
    """Rows of bench's Markdown table (| measure | result | target |)."""
    rows = []
    for r in results["levels"]:
        h = r["healthz_ms"]
        reasons = ", ".join(f"{k} {v}" for k, v in r["refused_by_reason"].items()) or "none"
        v = r["verification"]
        stored = "all stored" if v["ok"] else f"LOST {v['lost']}, duplicated {v['duplicated']}"
        rows.append(
            f"| overload {r['multiple']}x max_inflight_requests ({r['exporters']} exporters, {r['seconds']:.0f} s): "
            f"acknowledged spans/s ÷ 1x; refused; /healthz p50 / p99 / max (p99 ÷ unloaded p50); peak RSS | "
            f"{r['throughput_ratio_vs_1x']:.2f} ({r['acked_spans_per_s']:.0f} spans/s); "
            f"{r['refusal_share']:.0%} of {r['attempts']} attempts ({reasons}); "
            f"{h['p50']:.1f} / {h['p99']:.1f} / {h['max']:.1f} ms ({r['healthz_p99_ratio_vs_unloaded']:.1f}× "
            f"{r['healthz_unloaded_p50_ms']:.1f} ms); {r['rss_mb']['peak']:.0f} MB; {stored} | "
            f"/healthz < 1 s, acknowledged = stored |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 s per level instead of 15")
    parser.add_argument("--seconds", type=float, default=None, help="load per level")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--daemon-source", type=Path, default=ROOT, help="run the daemon from this tree")
    args = parser.parse_args(argv)
    results = bench(args.quick, args.seconds, args.daemon_source)
    print("\n| measure | result | target |\n|---|---|---|")
    print("\n".join(report_rows(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    failed = [r for r in results["levels"] if not r["verification"]["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
