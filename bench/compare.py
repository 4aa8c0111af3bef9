"""``python -m bench.compare BASE [--rounds 3] [--requests 40]``: the sidecar of commit BASE and
of this tree, alternately, on this tree's workloads — the fair before/after of a change, since
the null receiver's rate (the denominator of ``make bench``'s ratios) moves with the machine's
load from one hour to the next, and workloads change with the bench.

Rows: the bench's own mix over OTLP/gRPC, the real stacks' captures over OTLP/gRPC, and the
own mix as the Dunetrace SDK's ``POST /v1/ingest`` batches (if BASE serves it). BASE is checked
out in a temporary git worktree, removed at the end; its sidecar runs from there with this
tree's Python environment. Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench import throughput
from bench.captures_workload import capture_requests
from bench.ingest_workload import ingest_groups
from bench.workload import build_requests

ROOT = Path(__file__).resolve().parent.parent


def _generated_messages(base: Path, commit: str) -> None:
    """The decisions service's generated messages (never checked in; setup.py makes them at
    install): this tree's, when ``proto/`` is the same at ``commit``."""
    same = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", commit, "--", "proto/"], check=False)
    if same.returncode != 0:
        raise SystemExit(f"proto/ differs at {commit}: install that tree to generate its messages")
    for generated in (ROOT / "dunetrace_sidecar" / "_pb").glob("*_pb2.py*"):
        shutil.copyfile(generated, base / "dunetrace_sidecar" / "_pb" / generated.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="a commit (or anything git rev-parse takes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=40, help="requests of about 512 spans per workload")
    args = parser.parse_args(argv)
    own = build_requests(args.requests)
    workloads = {"grpc": own, "captures": capture_requests(args.requests), "ingest": own}
    ingest = ingest_groups(own[0])
    cpu: dict[tuple[str, str], list[float]] = {}
    rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base], check=True)
        try:
            _generated_messages(base, args.base)
            trees = {args.base: base, "this tree": ROOT}
            for _ in range(args.rounds):
                for row, (requests, spans) in workloads.items():
                    for name, tree in trees.items():
                        throughput.ROOT = tree  # whose daemon start() launches
                        transport = "ingest" if row == "ingest" else "grpc"
                        try:
                            rate, per_span, _ = throughput.measure("sidecar", transport, requests, spans, 4, ingest)
                        except RuntimeError as exc:  # e.g. a base without POST /v1/ingest
                            print(f"  {row:8} {name:10} failed: {exc}", flush=True)
                            continue
                        cpu.setdefault((row, name), []).append(per_span)
                        rates.setdefault((row, name), []).append(rate)
                        print(f"  {row:8} {name:10} {rate:8.0f} spans/s {per_span:6.1f} µs CPU/span", flush=True)
        finally:
            throughput.ROOT = ROOT
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    print()
    print(f"| workload | {args.base} µs CPU/span | this tree µs CPU/span | this ÷ base | spans/s, this ÷ base |")
    print("|---|---|---|---|---|")
    for row in workloads:
        before, after = cpu.get((row, args.base)), cpu.get((row, "this tree"))
        if not before or not after:
            continue
        b, a = statistics.median(before), statistics.median(after)
        spread_b, spread_a = f"{min(before):.0f}–{max(before):.0f}", f"{min(after):.0f}–{max(after):.0f}"
        rate_b, rate_a = statistics.median(rates[(row, args.base)]), statistics.median(rates[(row, "this tree")])
        print(
            f"| {row} | {b:.0f} ({spread_b}) | {a:.0f} ({spread_a}) | {a / b:.2f} | "
            f"{rate_a:.0f} ÷ {rate_b:.0f} = {rate_a / rate_b:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
