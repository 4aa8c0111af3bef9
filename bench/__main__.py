"""``python -m bench [--quick]`` (``make bench``): every benchmark in one run, as ratios and
distributions measured side by side on this machine, written as Markdown and JSON.

1. throughput: the sidecar's full path ÷ a null receiver (parses only), per transport (OTLP gRPC,
   OTLP HTTP, and the Dunetrace SDK's POST /v1/ingest carrying the same runs);
2. detection latency at ~50 % of the sidecar's maximum sustained load;
3. memory: RSS per open run with 10,000 open runs, and RSS over a sustained run (flat?);
4. storage: DuckDB bytes per 1,000 spans;
5. cost growth: per-span CPU at runs of 10, 100, 1,000 and 10,000 steps, and into an empty store
   against one holding 100,000 runs (``bench/store_size.py``);
6. overload: 1x, 4x, 16x, 64x max_inflight_requests concurrent exporters (``bench/overload.py``):
   refusals, /healthz latency, peak RSS, throughput ÷ the 1x level's, every acknowledged span stored;
7. dashboard: each page's render time in headless Chromium with 10,000 runs in the store ÷ with
   one run (``bench/dashboard.py``).

Traffic goes only to 127.0.0.1, bounded in count and time. ``--quick`` finishes in about a minute and a half.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import api_latency, dashboard, detection_latency, overload, run_length, store_size, throughput
from bench.captures_workload import build_capture_workload
from bench.ingest_workload import ingest_groups
from bench.workload import RunShape, build_requests, build_run

RESULTS = Path(__file__).resolve().parent / "results"


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(s: dict[str, float], digits: int = 0) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def bench_throughput(rounds: int, n_requests: int) -> dict[str, Any]:
    own, own_spans = build_requests(n_requests)
    ingest = ingest_groups(own)
    captures = build_capture_workload(n_requests)
    out: dict[str, Any] = {
        "spans_per_round": own_spans,
        "bytes_per_span": sum(map(len, own)) / own_spans,
        "captures_workload": captures.summary(),
    }
    for transport in throughput.ROWS:
        # "captures": the real stacks' runs (bench/captures_workload.py) over OTLP/gRPC
        requests, spans = (captures.requests, captures.spans) if transport == "captures" else (own, own_spans)
        null_rates, side_rates, ratios, cpu, stored = [], [], [], [], []
        for _ in range(rounds):
            null_rate, _, _ = throughput.measure("null", transport, requests, spans, 4, ingest)
            side_rate, side_cpu, side_bytes = throughput.measure("sidecar", transport, requests, spans, 4, ingest)
            null_rates.append(null_rate)
            side_rates.append(side_rate)
            ratios.append(side_rate / null_rate)
            cpu.append(side_cpu)
            stored.append(side_bytes / (spans * (len(requests) - 1) / len(requests)) * 1000)
            print(f"  throughput {transport}: null {null_rate:.0f}, sidecar {side_rate:.0f} spans/s", flush=True)
        out[transport] = {
            "null_spans_per_s": summary(null_rates),
            "sidecar_spans_per_s": summary(side_rates),
            "ratio": summary(ratios),
            "sidecar_cpu_us_per_span": summary(cpu),
            "store_bytes_per_1000_spans": summary(stored),
        }
    return out


def open_run_requests(runs: int, per_request: int = 100) -> list[bytes]:
    """Runs that stay open: an LLM call and a tool call each, no root span."""
    rng = random.Random(5)
    out = []
    for start in range(0, runs, per_request):
        request = ExportTraceServiceRequest()
        ss = request.resource_spans.add().scope_spans.add()
        for _ in range(min(per_request, runs - start)):
            spans = build_run(rng, RunShape(2, False, False, False, False), time.time_ns())
            ss.spans.extend(s for s in spans if s.parent_span_id)
        out.append(request.SerializeToString())
    return out


STORE_MEMORY = "dunetrace_store_memory_bytes"


# Runs the control daemon keeps open while it takes the same runs: they are shed at once.
CONTROL_OPEN_RUNS = 100
MEMORY_ROUNDS = 2


def _rss_growth(runs: int, max_open_runs: int) -> tuple[int, int, float]:
    """(RSS before, RSS after in KB, DuckDB's own growth in bytes) of a fresh sidecar taking
    ``runs`` runs that never end, keeping at most ``max_open_runs`` of them open."""
    server = throughput.start("sidecar", {"DUNETRACE_MAX_OPEN_RUNS": str(max_open_runs)})
    try:
        target = server.addresses["otlp_grpc"]
        throughput.send_grpc(target, open_run_requests(200), 1)  # warm every code path first
        time.sleep(1.0)
        before, store_before = server.rss_kb(), server.gauge(STORE_MEMORY)
        throughput.send_grpc(target, open_run_requests(runs), 2)
        time.sleep(1.0)
        after, store_after = server.rss_kb(), server.gauge(STORE_MEMORY)
    finally:
        server.stop()
    return before, after, store_after - store_before


def bench_memory(open_runs: int, soak_seconds: float) -> dict[str, Any]:
    """RSS per open run. Taking runs grows a process's memory whether it keeps them open or not
    (DuckDB's buffer cache and allocators, up to their bounds), so a control sidecar takes the same
    runs keeping only CONTROL_OPEN_RUNS open: the difference is what the open runs hold."""
    kept: list[tuple[int, int, float]] = []
    control: list[float] = []
    for _ in range(MEMORY_ROUNDS):  # interleaved, like every other measure
        kept.append(_rss_growth(open_runs, open_runs * 2))
        before, after, _ = _rss_growth(open_runs, CONTROL_OPEN_RUNS)
        control.append((after - before) * 1024 / open_runs)
    per_run = statistics.median((after - before) * 1024 / open_runs for before, after, _ in kept)
    store_growth = statistics.median(growth for _, _, growth in kept)
    # DuckDB's buffer cache holds the blocks just written (the runs' events), by its own accounting;
    # it is bounded by store.memory_limit, not by the number of open runs.
    per_run_outside_store = per_run - store_growth / open_runs
    per_run_control = statistics.median(control)
    before, after, _ = kept[0]
    print(
        f"  memory: {open_runs} open runs: {per_run:.0f} B/run of RSS growth ({per_run_outside_store:.0f} B/run "
        f"outside DuckDB's buffer cache, which grew {store_growth / 1024:.0f} KB); the same runs with "
        f"{CONTROL_OPEN_RUNS} kept open: {per_run_control:.0f} B/run; held by open runs: "
        f"{per_run - per_run_control:.0f} B/run",
        flush=True,
    )
    return {
        "open_runs": open_runs,
        "rss_before_kb": before,
        "rss_after_kb": after,
        "bytes_per_open_run": per_run,
        "store_memory_growth_bytes": store_growth,
        "bytes_per_open_run_outside_store": per_run_outside_store,
        "bytes_per_run_taken_control": per_run_control,
        "bytes_held_per_open_run": per_run - per_run_control,
        **bench_soak(soak_seconds),
    }


SOAK_SPANS_PER_S = 4_000  # about half of the sidecar's maximum on the bench workload here


def bench_soak(
    soak_seconds: float,
    spans_per_s: float = SOAK_SPANS_PER_S,
    memory_limit: str = "64MB",
    retention_hours: float | None = None,
) -> dict[str, Any]:
    """Steady load of complete runs (fresh trace ids, 128-span exports from two paced senders),
    sampling RSS and what DuckDB accounts for itself. A short stall timeout so runs are evicted
    within the soak, and a small DuckDB memory limit so its buffer cache (which grows to the limit
    by design) reaches its plateau within the soak too. RSS is noisy (the allocators keep and
    return memory in large steps), so besides first-to-last the growth is also taken between the
    medians of the first and last thirds after warm-up (the first quarter). ``retention_hours``
    (store.retention_hours; the daemon's default when None) shorter than the soak lets the store
    stop growing within it."""
    env = {"DUNETRACE_STALL_TIMEOUT": "5", "DUNETRACE_STORE_MEMORY_LIMIT": memory_limit}
    if retention_hours is not None:
        env["DUNETRACE_STORE_RETENTION_HOURS"] = str(retention_hours)
    server = throughput.start("sidecar", env)
    samples: list[tuple[float, int, int]] = []  # seconds, RSS KB, DuckDB KB
    pool, pool_spans = build_requests(60, spans_per_request=128, seed=int(uuid.uuid4().int % 1000))
    per_export = pool_spans / len(pool)
    senders = 2
    interval = senders * per_export / spans_per_s  # seconds between one sender's exports
    sent = [0] * senders
    refused_by: list[Counter[str]] = [Counter() for _ in range(senders)]  # by gRPC status, one per sender thread
    stop = threading.Event()

    def sender(k: int) -> None:
        target = server.addresses["otlp_grpc"]
        with grpc.insecure_channel(target) as channel:
            call = channel.unary_unary(throughput.TRACE_METHOD, request_serializer=None, response_deserializer=None)
            i, due = k, time.monotonic()
            while not stop.is_set():
                request = ExportTraceServiceRequest.FromString(pool[i % len(pool)])
                for rs in request.resource_spans:  # fresh trace ids: new runs, not duplicates
                    for ss in rs.scope_spans:
                        ids: dict[bytes, bytes] = {}
                        for span in ss.spans:
                            span.trace_id = ids.setdefault(span.trace_id, uuid.uuid4().bytes)
                try:
                    call(request.SerializeToString(), timeout=60)
                except grpc.RpcError as exc:  # counted and reported: a soak must not hide a refusal
                    refused_by[k][exc.code().name] += 1
                else:
                    sent[k] += len(request.resource_spans[0].scope_spans[0].spans)
                i += senders
                due += interval
                stop.wait(max(0.0, due - time.monotonic()))

    threads = [threading.Thread(target=sender, args=(k,), daemon=True) for k in range(senders)]
    try:
        t0 = time.monotonic()
        for thread in threads:
            thread.start()
        while time.monotonic() - t0 < soak_seconds:
            samples.append((time.monotonic() - t0, server.rss_kb(), int(server.gauge(STORE_MEMORY) // 1024)))
            time.sleep(max(soak_seconds / 40, 1.0))
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        elapsed = time.monotonic() - t0
        samples.append((elapsed, server.rss_kb(), int(server.gauge(STORE_MEMORY) // 1024)))
    finally:
        stop.set()
        server.stop()
    warm = [(kb, store) for t, kb, store in samples if t >= soak_seconds * 0.25] or [samples[-1][1:]]
    refused = sum(refused_by, Counter[str]())
    third = max(1, len(warm) // 3)
    first, last = statistics.median(kb for kb, _ in warm[:third]), statistics.median(kb for kb, _ in warm[-third:])
    growth = warm[-1][0] - warm[0][0]
    store_growth = warm[-1][1] - warm[0][1]
    rate = sum(sent) / elapsed
    print(
        f"  soak {soak_seconds:.0f}s at {rate:.0f} spans/s: RSS {warm[0][0]} → {warm[-1][0]} KB after warm-up "
        f"({growth:+d} KB, {growth / warm[0][0]:+.1%}); medians of the first and last thirds {first:.0f} → "
        f"{last:.0f} KB ({(last - first) / first:+.1%}); DuckDB's own {store_growth:+d} KB; "
        f"refused exports: {dict(refused) or 'none'}",
        flush=True,
    )
    return {
        "soak_seconds": soak_seconds,
        "soak_spans_per_s": rate,
        "soak_memory_limit": memory_limit,
        "soak_retention_hours": retention_hours,
        "soak_rss_kb": samples,
        "soak_growth_after_warmup_kb": growth,
        "soak_growth_after_warmup_share": growth / warm[0][0],
        "soak_thirds_median_kb": [first, last],
        "soak_thirds_growth_share": (last - first) / first,
        "soak_store_growth_after_warmup_kb": store_growth,
        "soak_refused_exports": dict(refused),
    }


def bench_latency(quick: bool) -> dict[str, Any]:
    path = RESULTS / ".latency.json"
    detection_latency.main(["--json", str(path), *(["--quick"] if quick else [])])
    return json.loads(path.read_text())


def bench_api(quick: bool) -> dict[str, Any]:
    """API read latency over a store of 100,000 runs and 1,000,000 events (10,000 and 100,000
    quick), idle and under ingest load (bench/api_latency.py)."""
    path = RESULTS / ".api.json"
    runs = ["--runs", "10000", "--samples", "100", "--load-samples", "100"] if quick else []
    api_latency.main(["--json", str(path), *runs])
    return json.loads(path.read_text())


def bench_cost(quick: bool) -> dict[str, Any]:
    out = {}
    for loop in (False, True):
        costs = [
            run_length.cpu_per_span(n, loop, repeats=run_length.repeats_for(n, quick)) for n in run_length.RUN_LENGTHS
        ]
        out["one tool repeated" if loop else "mixed tools"] = dict(
            zip(map(str, run_length.RUN_LENGTHS), costs, strict=True)
        )
    return out


def report(results: dict[str, Any], command: str) -> str:
    t = results["throughput"]
    m = results["memory"]
    lat = results["latency"]["levels"]
    lines = [
        f"Command: `{command}` — {results['machine']}, {results['date']}. Medians with min–max over "
        f"{results['rounds']} interleaved rounds.",
        "",
        "| measure | result | target |",
        "|---|---|---|",
    ]
    for transport in (name for name in throughput.ROWS if name in t):
        r = t[transport]
        what = {
            "ingest": "ingest (the SDK's POST /v1/ingest, 2 events per span)",
            "captures": "captures (the real stacks' runs over OTLP/gRPC)",
            "grpc-thread": "grpc with translation on a thread (`receiver.translation_processes=0`)",
        }.get(transport, transport)
        lines.append(
            f"| throughput ratio, {what} (sidecar ÷ null receiver) | {fmt(r['ratio'], 3)} "
            f"({fmt(r['sidecar_spans_per_s'])} vs {fmt(r['null_spans_per_s'])} spans/s; sidecar "
            f"{fmt(r['sidecar_cpu_us_per_span'])} µs CPU/span) | "
            + ("≤ 60 µs CPU/span, ratio ≥ 0.10 (issue 15) |" if transport == "grpc" else "— |")
        )
    half = lat.get("50%", {})
    lines.append(
        f"| detection latency at 50 % load (max {results['latency']['max_spans_per_s']:.0f} spans/s): export "
        f"returned → signal listed | p50 {half.get('p50_ms')} ms, p99 {half.get('p99_ms')} ms; proving export "
        f"round trip p50 {half.get('export_rtt_p50_ms')} / p99 {half.get('export_rtt_p99_ms')} ms | p99 ≤ 250 ms |"
    )
    lines.append(
        f"| RSS per open run ({m['open_runs']:,} open runs): held by the open runs (growth minus a control "
        f"taking the same runs with {CONTROL_OPEN_RUNS} kept open) | {m['bytes_held_per_open_run'] / 1024:.1f} KB; "
        f"growth {m['bytes_per_open_run'] / 1024:.1f} KB per run ({m['rss_before_kb'] / 1024:.0f} → "
        f"{m['rss_after_kb'] / 1024:.0f} MB; {m['bytes_per_open_run_outside_store'] / 1024:.1f} KB outside "
        f"DuckDB's buffer cache, which grew {m['store_memory_growth_bytes'] / 2**20:.0f} MB), control "
        f"{m['bytes_per_run_taken_control'] / 1024:.1f} KB per run | ≤ 4 KB |"
    )
    lines.append(
        f"| RSS growth over a {m['soak_seconds']:.0f} s sustained run at {m['soak_spans_per_s']:.0f} spans/s, "
        f"after warm-up (store.memory_limit 64MB) | {m['soak_growth_after_warmup_kb'] / 1024:+.1f} MB "
        f"({m['soak_growth_after_warmup_share']:+.1%}); medians of first and last thirds "
        f"{m['soak_thirds_growth_share']:+.1%}; DuckDB's own accounting "
        f"{m['soak_store_growth_after_warmup_kb'] / 1024:+.1f} MB; refused exports: "
        f"{m.get('soak_refused_exports') or 'none'} | < 5 % over 10 min at half load |"
    )
    store = t["grpc"]["store_bytes_per_1000_spans"]
    lines.append(f"| DuckDB bytes per 1,000 spans | {fmt(store)} | — |")
    for shape, costs in results["cost"].items():
        lines.append(
            f"| per-span CPU at 10 / 100 / 1,000 / 10,000 steps ({shape}) | "
            f"{costs['10']:.0f} / {costs['100']:.0f} / {costs['1000']:.0f} / {costs['10000']:.0f} µs | flat |"
        )
    if "store_size" in results:
        lines.append(store_size.summary_row(results["store_size"]))
    if "overload" in results:
        lines += overload.report_rows(results["overload"])
    if "api" in results:
        lines += api_rows(results["api"])
    if "dashboard" in results:
        lines.append(dashboard.summary_row(results["dashboard"]))
    return "\n".join(lines)


def api_rows(api: dict[str, Any]) -> list[str]:
    store = api["store"]
    rows = []
    for phase, label in (
        ("idle", "idle"),
        ("under_load", f"under {api['ingest']['target_spans_per_s']} spans/s of ingest"),
    ):
        routes = {name: r for name, r in api[phase].items() if name.startswith(("GET /v1/runs", "GET /v1/signals"))}
        worst = max(routes.items(), key=lambda item: item[1]["p99_ms"])
        rows.append(
            f"| API reads, {label}, {store['runs']:,} runs and {store['events']:,} events stored: worst p99 over "
            f"{len(routes)} `/v1/runs` and `/v1/signals` routes | {worst[1]['p99_ms']:.1f} ms (`{worst[0]}`) "
            "| p99 < 50 ms |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer and smaller rounds (about a minute)")
    parser.add_argument("--soak-seconds", type=float, default=None, help="sustained-run length (default 120, quick 10)")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    quick = args.quick
    rounds = 1 if quick else 3
    command = "make bench" + (" ARGS=--quick" if quick else "")
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "rounds": rounds,
    }
    print("throughput…", flush=True)
    results["throughput"] = bench_throughput(rounds, 12 if quick else 40)
    print("detection latency…", flush=True)
    results["latency"] = bench_latency(quick)
    print("memory…", flush=True)
    soak = args.soak_seconds if args.soak_seconds is not None else (10.0 if quick else 120.0)
    results["memory"] = bench_memory(2_000 if quick else 10_000, soak)
    print("cost growth…", flush=True)
    results["cost"] = bench_cost(quick)
    results["store_size"] = store_size.bench(10_000 if quick else 100_000, rounds, 8 if quick else 30)
    print("overload…", flush=True)
    results["overload"] = overload.bench(quick)
    print("API reads…", flush=True)
    results["api"] = bench_api(quick)
    print("dashboard…", flush=True)
    results["dashboard"] = dashboard.run(2_000 if quick else 10_000, 1 if quick else 5)
    table = report(results, command)
    name = "quick" if quick else "latest"
    (RESULTS / f"{name}.md").write_text(table + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
