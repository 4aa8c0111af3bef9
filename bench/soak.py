"""``python -m bench.soak [--minutes 10] [--kill-every 60]`` (``make soak``): the daemon under
mixed load for minutes, SIGKILLed and restarted on the same DuckDB file every minute, then
checked: nothing acknowledged lost, nothing duplicated.

Load: concurrent exporters over every transport we serve (OTLP/HTTP protobuf, JSON and gzip,
raw OTLP/gRPC, the OTel SDK's gRPC exporter), each sending realistic gen_ai runs (an
invoke_agent root, LLM spans asking for tools, tool spans answering them; a share loop on one
tool with identical arguments so TOOL_LOOP fires, a share fail a tool) split across several
exports, a share out of order; a share of acknowledged exports is sent again (an exporter
whose answer was lost does that). Refusals (503 / UNAVAILABLE, connection errors while the
daemon is down) are retried with backoff, honouring the delay the daemon asks for. API
readers poll /healthz, /metrics, /v1/runs and /v1/runs/{id} throughout.

At the end the daemon is stopped gracefully and its DuckDB file opened read-only:
``loadgen.verify`` checks every acknowledged span against it. Exit status 1 when anything
acknowledged is lost or duplicated, the daemon crashed on its own, or a restart got stuck.

This is a pass/fail robustness check that kills the daemon, not a ratio benchmark, so
``make bench`` does not run it; it lives in bench/ to share the daemon launcher, workload and
verifier with the overload scenario and write its results next to the benchmarks'.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import platform
import random
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import (
    ROOT,
    Daemon,
    Exporter,
    Ledger,
    SpanSpec,
    Verification,
    make_exporter,
    percentile,
    random_trace,
    rss_kb,
    send_until_acked,
    split,
    verify,
)

RESULTS = Path(__file__).resolve().parent / "results"
CLIENT_KINDS = ("http-protobuf", "http-protobuf", "http-json", "http-gzip", "grpc", "grpc", "sdk-grpc")
REPLAY_SHARE = 0.05  # acknowledged exports sent again


@dataclass
class Settings:
    minutes: float = 10.0
    kill_every: float = 60.0
    clients: tuple[str, ...] = CLIENT_KINDS
    readers: int = 2
    pause: float = 0.02  # between one client's exports
    drain: float = 60.0  # after the load stops, clients finish the runs they started
    seed: int = 1
    memory_limit: str = "256MB"
    max_inflight: int = 4  # small, so the exporters meet the daemon's backpressure too
    json_path: Path = RESULTS / "soak.json"
    workdir: Path | None = None
    source: Path = ROOT


@dataclass
class Kill:
    at_s: float
    rss_mb: float
    ready_s: float = float("nan")


@dataclass
class Shared:
    """What the threads share besides the ledger."""

    daemon: Daemon
    ledger: Ledger
    stop_new: threading.Event = field(default_factory=threading.Event)
    stop_all: threading.Event = field(default_factory=threading.Event)
    hard_deadline: float = 0.0
    replays: list[list[SpanSpec]] = field(default_factory=list)  # recently acknowledged exports
    api: Counter[str] = field(default_factory=Counter)
    api_failures: list[str] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (s since start, MB)
    lock: threading.Lock = field(default_factory=threading.Lock)


# --- exporters ---------------------------------------------------------------------------


def client(kind: str, index: int, shared: Shared, settings: Settings) -> None:
    """Send runs until told to stop, then finish the run in hand (bounded by the deadline)."""
    rng = random.Random(settings.seed * 1000 + index)
    exporter = make_exporter(kind, shared.daemon)
    try:
        while not shared.stop_new.is_set():
            _send_runs(exporter, rng, shared)
            _maybe_replay(exporter, rng, shared)
            time.sleep(settings.pause * rng.uniform(0.5, 1.5))
    finally:
        exporter.close()


def _send_runs(exporter: Exporter, rng: random.Random, shared: Shared) -> None:
    """One or two runs, their parts interleaved: an export may carry spans of both."""
    traces = [random_trace(rng) for _ in range(rng.choice((1, 1, 2)))]
    for trace in traces:
        shared.ledger.plan(trace)
    parts = [split(t, rng) for t in traces]
    for i in range(max(len(p) for p in parts)):
        spans = [s for p in parts if i < len(p) for s in p[i]]
        if send_until_acked(exporter, spans, shared.ledger, shared.hard_deadline, rng):
            with shared.lock:
                shared.replays.append(spans)
                del shared.replays[:-200]


def _maybe_replay(exporter: Exporter, rng: random.Random, shared: Shared) -> None:
    """An exporter that lost an answer sends the export again: the daemon must not store it twice.
    The replayed export may predate the last kill (its run is restored from the store)."""
    if rng.random() >= REPLAY_SHARE:
        return
    with shared.lock:
        spans = rng.choice(shared.replays) if shared.replays else None
    if spans is not None:
        shared.ledger.note("replays sent")
        send_until_acked(exporter, spans, shared.ledger, shared.hard_deadline, rng, replay=True)


# --- API readers and RSS --------------------------------------------------------------------


def reader(index: int, shared: Shared) -> None:
    rng = random.Random(index)
    host, port = shared.daemon.address("api").rsplit(":", 1)
    while not shared.stop_all.is_set():
        runs = shared.ledger.snapshot_acked_runs()
        paths = ["/healthz", "/readyz", "/metrics", "/v1/runs?limit=50"]
        if runs:
            paths.append(f"/v1/runs/{rng.choice(runs[-500:])}")
        for path in paths:
            _read(host, int(port), path, shared)
        time.sleep(0.2)


def _read(host: str, port: int, path: str, shared: Shared) -> None:
    endpoint = path.split("?")[0] if not path.startswith("/v1/runs/") else "/v1/runs/{id}"
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        status = str(response.status)
    except (OSError, http.client.HTTPException):
        status = "connection error"  # the daemon is down or restarting
    finally:
        conn.close()
    with shared.lock:
        shared.api[f"{endpoint} {status}"] += 1
        # Acknowledged means stored: an acknowledged run is readable at once. 5xx is a bug.
        if status.startswith("5") or (endpoint == "/v1/runs/{id}" and status == "404"):
            shared.api_failures.append(f"GET {path}: {status}")


def sampler(shared: Shared, started: float) -> None:
    while not shared.stop_all.is_set():
        pid = shared.daemon.pid
        kb = rss_kb(pid) if pid else 0
        if kb:
            with shared.lock:
                shared.rss.append((time.monotonic() - started, kb / 1024))
        shared.stop_all.wait(1.0)


# --- the run -----------------------------------------------------------------------------


def run(settings: Settings) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dunetrace-soak-") as tmp:
        workdir = settings.workdir or Path(tmp)
        env = {
            "DUNETRACE_STORE_MEMORY_LIMIT": settings.memory_limit,
            "DUNETRACE_MAX_INFLIGHT_REQUESTS": str(settings.max_inflight),
        }
        daemon = Daemon(workdir, env, settings.source)
        try:
            return _run(daemon, settings)
        finally:
            daemon.close()


def _run(daemon: Daemon, settings: Settings) -> dict[str, Any]:
    shared = Shared(daemon, Ledger())
    started = time.monotonic()
    duration = settings.minutes * 60
    shared.hard_deadline = started + duration + settings.drain
    first_ready = daemon.start()
    print(f"daemon ready in {first_ready:.2f} s on {daemon.workdir}; load for {duration:.0f} s", flush=True)
    threads = [
        threading.Thread(target=client, args=(kind, i, shared, settings), name=f"client-{kind}-{i}")
        for i, kind in enumerate(settings.clients)
    ]
    threads += [threading.Thread(target=reader, args=(i, shared), name=f"reader-{i}") for i in range(settings.readers)]
    watcher = threading.Thread(target=sampler, args=(shared, started), name="rss")
    for thread in [*threads, watcher]:
        thread.start()
    life = _kill_loop(daemon, shared, settings, started, duration)
    shared.stop_new.set()
    for thread in threads[: len(settings.clients)]:
        thread.join(timeout=max(shared.hard_deadline - time.monotonic(), 0) + 30)
    shared.stop_all.set()
    for thread in [*threads, watcher]:
        thread.join(timeout=30)
    final_rss = rss_kb(daemon.pid) / 1024 if daemon.pid else 0.0
    exit_code = daemon.stop() if daemon.process is not None and daemon.exited() is None else None
    verification = verify(daemon.db_path, shared.ledger)
    return _results(settings, shared, verification, life, first_ready, exit_code, final_rss, started)


@dataclass
class Lifecycle:
    """What happened to the daemon process during the load."""

    kills: list[Kill] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)  # it exited on its own
    restarts: list[float] = field(default_factory=list)  # seconds to ready, after kills and crashes
    failed_starts: list[str] = field(default_factory=list)
    stuck: str | None = None  # no restart became ready


START_ATTEMPTS = 3  # a failed start is a failure of the soak; the next attempts still get the data checked


def _restart(daemon: Daemon, life: Lifecycle) -> float | None:
    """Start again (up to START_ATTEMPTS times); seconds to ready, None when stuck."""
    for _ in range(START_ATTEMPTS):
        try:
            return daemon.start()
        except RuntimeError as exc:
            life.failed_starts.append(str(exc)[-1500:])
            daemon.process = None
            time.sleep(2.0)
    life.stuck = life.failed_starts[-1]
    return None


def _kill_loop(daemon: Daemon, shared: Shared, settings: Settings, started: float, duration: float) -> Lifecycle:
    """SIGKILL and restart every ``kill_every`` seconds; restart after a crash too."""
    life = Lifecycle()
    next_kill = started + settings.kill_every if settings.kill_every > 0 else float("inf")
    end = started + duration
    while time.monotonic() < end:
        time.sleep(0.2)
        code = daemon.exited()
        if code is not None:
            life.crashes.append(f"exited {code} at {time.monotonic() - started:.1f} s: {daemon.log_tail(1500)}")
            daemon.process = None
        elif time.monotonic() >= next_kill and time.monotonic() < end - 5:
            assert daemon.pid is not None
            life.kills.append(Kill(time.monotonic() - started, rss_kb(daemon.pid) / 1024))
            daemon.kill()
            next_kill += settings.kill_every
        else:
            continue
        ready = _restart(daemon, life)
        if ready is None:
            shared.hard_deadline = time.monotonic()  # nothing to send to: the clients give up now
            return life
        life.restarts.append(ready)
        if life.kills:
            life.kills[-1].ready_s = ready
        counts = shared.ledger.counts
        print(
            f"  {time.monotonic() - started:6.0f} s: restarted, ready in {ready:.2f} s; exports "
            f"{counts['exports acknowledged']} acknowledged, {counts['exports refused']} refused",
            flush=True,
        )
    return life


def _results(
    settings: Settings,
    shared: Shared,
    verification: Verification,
    life: Lifecycle,
    first_ready: float,
    exit_code: int | None,
    final_rss: float,
    started: float,
) -> dict[str, Any]:
    rss = [mb for _, mb in shared.rss]
    ledger = shared.ledger
    kills = life.kills
    problems = shared.daemon.log_problems()
    passed = (
        verification.ok
        and not (life.crashes or life.failed_starts or problems or shared.api_failures)
        and exit_code == 0
    )
    return {
        "passed": passed,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "settings": {
            "minutes": settings.minutes,
            "kill_every_s": settings.kill_every,
            "clients": list(settings.clients),
            "readers": settings.readers,
            "store_memory_limit": settings.memory_limit,
            "max_inflight_requests": settings.max_inflight,
            "daemon_source": str(settings.source),
        },
        "elapsed_s": round(time.monotonic() - started, 1),
        "exports": dict(ledger.counts),
        "refused_by_reason": dict(ledger.refused.most_common()),
        "runs_planned": len(ledger.planned),
        "kills": len(kills),
        "restarts": len(life.restarts),
        "first_ready_s": round(first_ready, 2),
        "ready_after_kill_s": [round(k.ready_s, 2) for k in kills if k.ready_s == k.ready_s],  # not NaN
        "crashes": life.crashes,
        "failed_starts": life.failed_starts,
        "stuck_restart": life.stuck,
        "daemon_log_problems": problems,
        "graceful_exit_code": exit_code,
        "rss_mb": {
            "peak": max(rss, default=0.0),
            "p50": statistics.median(rss) if rss else 0.0,
            "p99": percentile(rss, 99),
            "at_kills": [round(k.rss_mb, 1) for k in kills],
            "at_end": round(final_rss, 1),
            "samples": [(round(t, 1), round(mb, 1)) for t, mb in shared.rss],
        },
        "api": dict(sorted(shared.api.items())),
        "api_failures": shared.api_failures[:20],
        "verification": verification.summary(),
    }


def table(r: dict[str, Any]) -> str:
    ex, rss, v = r["exports"], r["rss_mb"], r["verification"]
    ready = r["ready_after_kill_s"]
    refused = ", ".join(f"{reason} {n}" for reason, n in r["refused_by_reason"].items()) or "none"
    rows = [
        ("result", "PASS" if r["passed"] else "FAIL"),
        (
            "duration",
            f"{r['elapsed_s']:.0f} s, {r['settings']['minutes']:g} min of load, "
            f"{len(r['settings']['clients'])} exporters",
        ),
        (
            "exports",
            f"{ex.get('exports sent', 0)} sent, {ex.get('exports acknowledged', 0)} acknowledged, "
            f"{ex.get('exports refused', 0)} refused, {ex.get('exports abandoned', 0)} abandoned",
        ),
        ("refused by reason", refused),
        ("answers lost in flight", str(ex.get("answers lost in flight", 0))),
        ("replays", f"{ex.get('replays sent', 0)} sent, {ex.get('replays acknowledged', 0)} acknowledged"),
        (
            "kills / restarts",
            f"{r['kills']} / {r['restarts']}; crashes {len(r['crashes'])}; failed starts "
            f"{len(r['failed_starts'])}; stuck: {bool(r['stuck_restart'])}",
        ),
        (
            "time to ready",
            f"first {r['first_ready_s']:.2f} s; after kills "
            + (f"median {statistics.median(ready):.2f} s, max {max(ready):.2f} s" if ready else "—"),
        ),
        (
            "RSS",
            f"peak {rss['peak']:.0f} MB, p50 {rss['p50']:.0f} MB, at kills "
            f"{', '.join(f'{x:.0f}' for x in rss['at_kills']) or '—'} MB, at end {rss['at_end']:.0f} MB",
        ),
        ("graceful stop", f"exit {r['graceful_exit_code']}"),
        ("daemon log", f"{len(r['daemon_log_problems'])} tracebacks / ERROR lines"),
        ("API reads", f"{sum(r['api'].values())}, failures {len(r['api_failures'])}"),
        (
            "verification",
            f"{v['acked_spans']} acknowledged spans in {v['acked_runs']} runs; stored {v['stored_runs']} runs, "
            f"{v['stored_events']} events; complete runs {v['complete_runs']}; loop runs with TOOL_LOOP "
            f"{v['loop_runs_with_tool_loop']}/{v['loop_runs_complete']}",
        ),
        (
            "lost / duplicated / miscounted / signals missing",
            f"{v['lost']} / {v['duplicated']} / {v['miscounted']} / {v['missing_signals']}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v_}" for k, v_ in rows]
    notes = v["examples"][:10] + r["api_failures"][:5] + r["crashes"][:2] + r["daemon_log_problems"][:3]
    notes += [f"failed start: {f}" for f in r["failed_starts"][:2]]
    lines += [f"  ! {note[:600]}" for note in notes]
    return "\n".join(lines)


def parse(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="load duration (default 10)")
    parser.add_argument("--kill-every", type=float, default=60.0, help="SIGKILL + restart period in s; 0: never")
    parser.add_argument("--clients", default=",".join(CLIENT_KINDS), help="exporter kinds, comma-separated")
    parser.add_argument("--readers", type=int, default=2, help="API reader threads")
    parser.add_argument("--pause", type=float, default=0.02, help="seconds between one client's exports")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds clients get to finish their runs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--memory-limit", default="256MB", help="store.memory_limit of the daemon")
    parser.add_argument(
        "--max-inflight", type=int, default=4, help="receiver.max_inflight_requests (small: refusals happen)"
    )
    parser.add_argument("--json", type=Path, default=RESULTS / "soak.json", help="results file")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the DuckDB file and log here")
    parser.add_argument(
        "--daemon-source", type=Path, default=ROOT, help="run the daemon from this tree (e.g. a git archive)"
    )
    args = parser.parse_args(argv)
    return Settings(
        minutes=args.minutes,
        kill_every=args.kill_every,
        clients=tuple(k for k in args.clients.split(",") if k),
        readers=args.readers,
        pause=args.pause,
        drain=args.drain,
        seed=args.seed,
        memory_limit=args.memory_limit,
        max_inflight=args.max_inflight,
        json_path=args.json,
        workdir=args.workdir,
        source=args.daemon_source,
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse(argv)
    # The SDK exporter logs each retry and each export it gives up on; the soak counts them instead.
    logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)
    results = run(settings)
    settings.json_path.parent.mkdir(parents=True, exist_ok=True)
    settings.json_path.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(table(results))
    print(f"\nresults: {settings.json_path}")
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
