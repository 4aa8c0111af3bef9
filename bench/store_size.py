"""Per-span cost against the store's size: the bench's mix over OTLP/gRPC into an empty store and
into one that already holds 100,000 runs (and 1,000,000 events), alternately.

    python -m bench.store_size [--runs 100000] [--rounds 3] [--requests 30]

Every export opens new runs, and a run not open in memory may be one the store holds (a run shed,
evicted or stored before a restart), so the daemon must know whether it is stored without reading
every stored run for it: flat is the goal. The full store is built once with
``bench.api_latency.build_store`` (the schema the daemon opens, filled by SQL) and copied for each
round; each sidecar is measured once it has read the stored run ids (its log says so).
Traffic goes only to 127.0.0.1, bounded in count.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.api_latency import build_store
from bench.throughput import Server, send_grpc, start
from bench.workload import build_requests
from store.duckdb_store import DuckStore

EVENTS_PER_RUN = 10
STREAMS = 4


def _wait_for_log(server: Server, text: str, timeout: float = 120.0) -> None:
    log = Path(server.workdir.name) / "server.log"
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the sidecar did not log {text!r}")
        time.sleep(0.05)


def measure(requests: list[bytes], spans: int, store_file: Path | None) -> float:
    """CPU µs per span of one fresh sidecar, on a copy of ``store_file`` (None: an empty store)."""
    env = {"DUNETRACE_STORE_RETENTION_HOURS": "0"}  # the built store's oldest runs are a week old
    if store_file is not None:
        copy = Path(tempfile.mkdtemp(prefix="bench-store-size-")) / "store.duckdb"
        shutil.copyfile(store_file, copy)
        env["DUNETRACE_DB_PATH"] = str(copy)
    server = start("sidecar", env)
    try:
        _wait_for_log(server, "stored run ids read")
        send_grpc(server.addresses["otlp_grpc"], requests[:1], 1)  # warm up
        cpu0 = server.cpu_seconds()
        send_grpc(server.addresses["otlp_grpc"], requests[1:], STREAMS)
        cpu = server.cpu_seconds() - cpu0
    finally:
        server.stop()
        if store_file is not None:
            shutil.rmtree(Path(env["DUNETRACE_DB_PATH"]).parent, ignore_errors=True)
    return cpu / (spans * (len(requests) - 1) / len(requests)) * 1e6


def bench(runs: int, rounds: int, n_requests: int) -> dict[str, Any]:
    requests, spans = build_requests(n_requests, seed=11)
    with tempfile.TemporaryDirectory(prefix="bench-store-size-") as workdir:
        full = Path(workdir) / "full.duckdb"
        store = DuckStore(str(full))
        store.open()  # the migrations: the schema the daemon opens
        store.close()
        build_store(full, runs, EVENTS_PER_RUN, agents=20, days=7, seed=5, now_ns=time.time_ns())
        empty: list[float] = []
        filled: list[float] = []
        for _ in range(rounds):
            empty.append(measure(requests, spans, None))
            filled.append(measure(requests, spans, full))
    ratios = [f / e for e, f in zip(empty, filled, strict=True)]
    return {
        "stored_runs": runs,
        "stored_events": runs * EVENTS_PER_RUN,
        "empty_cpu_us_per_span": empty,
        "filled_cpu_us_per_span": filled,
        "filled_over_empty": ratios,
    }


def summary_row(result: dict[str, Any]) -> str:
    def med(values: list[float], digits: int = 0) -> str:
        return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"

    return (
        f"| per-span CPU, OTLP/gRPC, into an empty store / one holding {result['stored_runs']:,} runs and "
        f"{result['stored_events']:,} events | {med(result['empty_cpu_us_per_span'])} / "
        f"{med(result['filled_cpu_us_per_span'])} µs, ratio {med(result['filled_over_empty'], 2)} | flat |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=30, help="requests of 512 spans each")
    args = parser.parse_args(argv)
    result = bench(args.runs, args.rounds, args.requests)
    print(summary_row(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
