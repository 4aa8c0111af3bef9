"""``python -m bench.profile [--requests N] [--label NAME]``: where the sidecar's CPU goes, per span.

Starts a sidecar as ``bench.throughput`` does (a fresh DuckDB file), samples it with ``py-spy
--gil`` (the thread holding the interpreter lock) while it takes the bench workload over OTLP/gRPC,
and writes ``bench/results/profile-<label>.txt``: the server's CPU µs per acknowledged span (from
/proc), then the µs per span of interpreter time each stage (the innermost frame that names one)
and each function (self: the innermost Python frame) is worth, from the samples and their rate.

Only the lock holder is sampled because a thread that releases it (SHA-256 of a long text,
DuckDB's appender and commit) is otherwise charged the time it then waits to take it back: the
hashing showed as 24 µs per span where it costs 2–3. Native work done without the lock (DuckDB
committing, on the other core) is therefore the difference between the CPU and the sampled total.
Traffic goes only to 127.0.0.1, bounded in count.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.throughput import send_grpc, start
from bench.workload import build_requests

RESULTS = Path(__file__).resolve().parent / "results"
# Stages, first match wins for a stack, tested innermost frame outwards: (name, file or function pattern).
STAGES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("injection scan", re.compile(r"detectors/patterns\.py")),
    ("content: JSON, hashing", re.compile(r"receiver/content\.py")),
    ("store (DuckDB writer)", re.compile(r"store/duckdb_store\.py")),
    ("detectors", re.compile(r"detectors/(engine|run_view|library/)")),
    ("policies", re.compile(r"policy_rules\.py|dunetrace_sidecar/policies\.py")),
    ("assembly (runs from spans)", re.compile(r"receiver/assemble\.py")),
    ("translation (attributes → facts)", re.compile(r"receiver/spans\.py")),
    ("pipeline wiring", re.compile(r"dunetrace_sidecar/pipeline\.py")),
    ("gRPC server, request decoding", re.compile(r"grpc|receiver/grpc_server\.py|protobuf")),
)
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install 'py-spy>=0.4,<1' (the bench extra)")
    return found


def record(n_requests: int, rate: int) -> tuple[dict[str, int], float, int]:
    """(collapsed stacks → samples, server CPU seconds, spans sent) for one sidecar."""
    requests, spans = build_requests(n_requests)
    server = start("sidecar")
    out = Path(tempfile.mkdtemp(prefix="bench-profile-")) / "stacks.txt"
    try:
        target = server.addresses["otlp_grpc"]
        send_grpc(target, requests[:1], 1)  # warm up the channel and the code paths
        command = [py_spy(), "record", "--pid", str(server.process.pid), "--rate", str(rate)]
        spy = subprocess.Popen(
            [*command, "--format", "raw", "--output", str(out), "--nonblocking", "--gil"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)  # py-spy attaches
        cpu0 = server.cpu_seconds()
        send_grpc(target, requests[1:], 4)
        cpu = server.cpu_seconds() - cpu0
        spy.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
        _, err = spy.communicate(timeout=60)
        if not out.exists():
            raise SystemExit(f"py-spy wrote nothing: {err.decode(errors='replace')[-2000:]}")
    finally:
        server.stop()
    stacks: dict[str, int] = {}
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] = stacks.get(stack, 0) + int(count)
    shutil.rmtree(out.parent, ignore_errors=True)
    sent = spans * (len(requests) - 1) // len(requests)
    return stacks, cpu, sent


def _frames(stack: str) -> list[tuple[str, str]]:
    """(function, file) of each frame, outermost first; thread headers dropped."""
    frames = []
    for part in stack.split(";"):
        match = _FRAME.match(part)
        if match:
            frames.append((match["function"], match["file"]))
    return frames


def _short(file: str) -> str:
    for marker in ("/site-packages/", "/work/main/", "/lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def summarize(stacks: dict[str, int], cpu_s: float, spans: int, rate: int) -> list[str]:
    total = sum(stacks.values()) or 1
    per_sample_us = 1e6 / rate / spans  # one sample stands for 1/rate s of the interpreter's time
    stage: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for stack, count in stacks.items():
        frames = _frames(stack)
        if frames:
            function, file = frames[-1]
            own[f"{function} ({_short(file)})"] += count
        name = "other (event loop, logging, …)"
        for function, file in reversed(frames):
            hit = next((n for n, pattern in STAGES if pattern.search(file) or pattern.search(function)), None)
            if hit is not None:
                name = hit
                break
        stage[name] += count

    def rows(counter: collections.Counter[str], limit: int) -> list[str]:
        out = ["| share | interpreter µs per span | |", "|---|---|---|"]
        for name, count in counter.most_common(limit):
            out.append(f"| {count / total:6.1%} | {count * per_sample_us:6.1f} | {name} |")
        return out

    return [
        f"Server CPU: {cpu_s / spans * 1e6:.1f} µs per acknowledged span ({spans} spans, {cpu_s:.2f} s); "
        f"interpreter time sampled: {total * per_sample_us:.1f} µs per span ({total} samples at {rate}/s).",
        "",
        "By stage (the innermost frame that names one):",
        "",
        *rows(stage, len(STAGES) + 1),
        "",
        "By function (self time, innermost Python frame), top 30:",
        "",
        *rows(own, 30),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=30, help="requests of 512 spans each")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--label", default="latest")
    args = parser.parse_args(argv)
    stacks, cpu, spans = record(args.requests, args.rate)
    lines = summarize(stacks, cpu, spans, args.rate)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"profile-{args.label}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
