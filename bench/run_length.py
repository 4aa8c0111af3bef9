"""Cost growth: per-span CPU time of translation + assembly + detection for runs of 10, 100,
1,000 and 10,000 steps, delivered as exporters do (batches of spans in end-time order). Flat is the goal:
evaluating a run must not rescan its history per event.

    python -m bench.run_length [--quick]

In-process (no transport, no store), so the ratio isolates what grows with run length.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.workload import RunShape, build_run
from detectors.engine import DetectionEngine
from detectors.run_view import RunView
from receiver.assemble import RunState
from receiver.content import Hasher
from receiver.spans import translate_request

BATCH = 64  # spans per export request, like a BatchSpanProcessor under steady load
RUN_LENGTHS = (10, 100, 1_000, 10_000)


def repeats_for(steps: int, quick: bool) -> int:
    """Fewer repeats of the long runs: a 10,000-step run is 10,000 spans already."""
    if steps >= 10_000:
        return 1
    if steps >= 1_000:
        return 1 if quick else 3
    return 3 if quick else 7


def requests_for(steps: int, loop: bool, seed: int) -> tuple[list[bytes], int]:
    rng = random.Random(seed)
    shape = RunShape(steps=steps, legacy_keys=False, loop=loop, tool_fails=False, truncates=False)
    spans = sorted(build_run(rng, shape, 1_795_000_000_000_000_000), key=lambda s: s.end_time_unix_nano)
    out = []
    for i in range(0, len(spans), BATCH):
        request = ExportTraceServiceRequest()
        ss = request.resource_spans.add().scope_spans.add()
        ss.spans.extend(spans[i : i + BATCH])
        out.append(request.SerializeToString())
    return out, len(spans)


def cpu_per_span(steps: int, loop: bool, repeats: int) -> float:
    hasher = Hasher()
    engine = DetectionEngine()
    samples = []
    for r in range(repeats):
        requests, n = requests_for(steps, loop, seed=r)
        start = time.process_time()
        state = view = None
        for body in requests:
            request = ExportTraceServiceRequest.FromString(body)
            facts = translate_request(request.resource_spans, hasher).facts
            facts.sort(key=lambda s: (s.start_ns, s.end_ns))
            if state is None:
                state = RunState(facts[0].run_id, "bench")
                view = RunView(facts[0].run_id, "bench")
            assert view is not None
            engine.process(view, state.apply_spans(facts))
        samples.append((time.process_time() - start) / n * 1e6)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    lengths = RUN_LENGTHS
    print("| run shape | " + " | ".join(f"{n} steps µs/span" for n in lengths) + " | 10000 / 10 |")
    print("|---|" + "---|" * (len(lengths) + 1))
    for loop in (False, True):
        costs = [cpu_per_span(n, loop, repeats=repeats_for(n, args.quick)) for n in lengths]
        label = "one tool repeated" if loop else "mixed tools"
        print(f"| {label} | " + " | ".join(f"{c:.1f}" for c in costs) + f" | {costs[-1] / costs[0]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
