"""``python -m bench.instructions [BASE ...]``: machine instructions per span of the two stages
that are pure Python — translation (a worker's part: decode, read, reduce content) and assembly
plus detection (the daemon's event loop: runs from facts, every detector) — counted by valgrind's
callgrind on the bench's workload (bench/workload.py), for this tree and for each BASE commit.

CPU time on these shared machines moves by ±20 % from one minute to the next, which hides a 5 %
change; an instruction count does not move (``PYTHONHASHSEED=0``, the same requests). Each count
is (instructions with N requests − with 1 request) ÷ the extra spans, so startup and imports
cancel out. It is a proxy, not a time: native work that runs faster than its instruction count
says (SHA-256 on a CPU with SHA extensions, which valgrind does not emulate) is overweighted.
Needs ``valgrind`` (Debian: ``apt-get install valgrind``); about a minute per tree.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.compare import _generated_messages

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 5  # of 512 spans; the first is the baseline run's
STAGES = ("translation", "assembly and detection")

# Run in the tree measured. Every request is built (and, for assembly and detection, translated)
# whatever N is, so the two runs differ only by the work counted.
CHILD = r"""
import sys
from bench.workload import build_requests
from receiver.content import Hasher
from receiver.ingest import EncodedRequest
from dunetrace_sidecar.translation import translate_spans

stage, n, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
requests, _ = build_requests(total, seed=7)
hasher = Hasher()
if stage == "translation":
    for body in requests[:n]:
        translate_spans(EncodedRequest(body, "grpc"), hasher)
else:
    from detectors.engine import DetectionEngine
    from detectors.run_view import RunView
    from receiver.assemble import RunState

    translated = [translate_spans(EncodedRequest(body, "grpc"), hasher).facts for body in requests]
    engine = DetectionEngine()
    for facts in translated[:n]:
        by_run = {}
        for fact in facts:
            by_run.setdefault(fact.run_id, []).append(fact)
        for run_id, spans in by_run.items():
            spans.sort(key=lambda s: (s.start_ns, s.end_ns))
            engine.process(RunView(run_id, "bench"), RunState(run_id, "bench").apply_spans(spans))
"""


def _child(tree: Path, stage: str, n: int, prefix: list[str]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    command = [*prefix, sys.executable, "-c", CHILD, stage, str(n), str(REQUESTS)]
    return subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)


def instructions(tree: Path, stage: str, n: int) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        done = _child(tree, stage, n, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out"])
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind failed in {tree}: {done.stderr[-2000:]}")
    return int(found.group(1))


def per_span(tree: Path, stage: str, spans_per_request: int) -> float:
    # Once without valgrind first: it writes the tree's bytecode caches, which the first counted
    # run would otherwise compile (a fresh worktree's whole package, an edited module) and count.
    warm = _child(tree, stage, 1, [])
    if warm.returncode != 0:
        raise SystemExit(f"the measured code failed in {tree}: {warm.stderr[-2000:]}")
    extra = instructions(tree, stage, REQUESTS) - instructions(tree, stage, 1)
    return extra / ((REQUESTS - 1) * spans_per_request)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bases", nargs="*", help="commits to count as well (anything git rev-parse takes)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    from bench.workload import build_requests

    _, spans = build_requests(1, seed=7)
    counts: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        trees = {"this tree": ROOT}
        try:
            for base in args.bases:
                path = Path(tmp) / base
                subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), base], check=True)
                _generated_messages(path, base)
                trees[base] = path
            for name, tree in trees.items():
                counts[name] = {stage: per_span(tree, stage, spans) for stage in STAGES}
                print(f"  {name}: " + ", ".join(f"{s} {c:,.0f}" for s, c in counts[name].items()), flush=True)
        finally:
            for tree in trees.values():
                if tree != ROOT:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    print()
    print("| tree | " + " | ".join(f"{stage}: instructions per span" for stage in STAGES) + " |")
    print("|---|" + "---|" * len(STAGES))
    this = counts["this tree"]
    for name, row in counts.items():
        cells = [
            f"{row[stage]:,.0f}" + ("" if name == "this tree" else f" (this tree ÷ it: {this[stage] / row[stage]:.2f})")
            for stage in STAGES
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
