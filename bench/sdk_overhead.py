"""``python -m bench.sdk_overhead``: what one tracked call of our in-process SDK costs the agent.

Runs ``bench/sdk_probe.py`` with our SDK's own venv (``.oursdkenv``, built by tests/oursdk/env.py
from ``sdk/python``): in one process, interleaved rounds of

- **bare**: the agent's loop calling a function with the same arguments (the baseline);
- **tool**: ``run.tool_called(name, args)`` + ``run.tool_responded(name, output=…)``;
- **llm**: ``run.llm_called(model, prompt=~2.4 KB text never seen before)`` +
  ``run.llm_responded(output=…)`` (hashing and the injection scan of the whole prompt included);
- **llm history**: the same with the prompt an agent sends — its conversation as messages (a
  system prompt and up to 11 turns, ~1.6 KB), one new turn per call;

each with spans handed to an exporter that discards them, the same with the docs' three policies
in force (one a ``signal`` trigger, so the detectors run in-process), and with the real OTLP/HTTP
exporter pointed at a collector that accepts connections and never answers — the caller's
thread must not notice. Reported: the caller-thread µs per tracked call (the bare loop's time
subtracted) and the process CPU µs per call (the export thread included); median and range over
the rounds. The issue's target: under 50 µs per tracked call.

Then an ``openai`` chat call through ``dt.auto_instrument()`` (the SDK's stacks venv,
``.oursdkenv-stacks``; a fake OpenAI server in this process): the same call inside a run and
outside one, interleaved — their difference is what tracking it costs, the OpenTelemetry
instrumentations' own spans included — and before instrumenting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PROBE = ROOT / "bench" / "sdk_probe.py"


def _probe(python: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [str(python), str(PROBE)],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the probe failed ({done.returncode}):\n{done.stderr[-4000:]}")
    probe: dict[str, Any] = json.loads(done.stdout)
    return probe


def run_probe(calls: int, rounds: int) -> dict[str, Any]:
    from tests.oursdk.env import ensure_oursdk_env

    return _probe(ensure_oursdk_env().python, {"PROBE_CALLS": str(calls), "PROBE_ROUNDS": str(rounds)})


def run_auto_probe(calls: int, rounds: int) -> dict[str, Any]:
    """The auto-instrumented openai call, in the SDK's stacks venv, against a fake OpenAI server
    in this process (so its work is not on the probe's clock)."""
    from tests.fakes.llm_servers import FakeOpenAI, Reply
    from tests.oursdk.env import ensure_oursdk_stacks_env

    python = ensure_oursdk_stacks_env().python
    replies = [Reply.answer("Your parcel is with the carrier and arrives tomorrow.")] * (calls * (3 * rounds + 1) + 2)
    with FakeOpenAI(replies) as server:
        env = {"PROBE_MODE": "auto", "PROBE_AUTO_CALLS": str(calls), "PROBE_ROUNDS": str(rounds)}
        return _probe(python, {**env, "PROBE_OPENAI_BASE_URL": server.base_url})


def summarize_auto(probe: dict[str, Any]) -> dict[str, Any]:
    """Tracked minus untracked, round by round (the same instrumented call, interleaved); the
    untracked call against the call before instrumenting (measured first, not interleaved)."""
    results = probe["results"]
    plain = [wall for wall, _ in results["openai / not instrumented"]]
    outside = [wall for wall, _ in results["openai / auto, outside a run"]]
    inside = [wall for wall, _ in results["openai / auto, inside a run"]]
    tracked = [i - o for i, o in zip(inside, outside, strict=True)]
    return {
        "calls": probe["calls"],
        "rounds": probe["rounds"],
        "call_us": {name: _spread([w for w, _ in rounds]) for name, rounds in results.items()},
        "tracked_minus_untracked_us": _spread(tracked),
        "untracked_minus_plain_us": statistics.median(outside) - statistics.median(plain),
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(probe: dict[str, Any]) -> dict[str, Any]:
    results = probe["results"]
    bare = [wall for wall, _ in results["bare"]]
    out: dict[str, Any] = {"calls": probe["calls"], "rounds": probe["rounds"], "bare_us": statistics.median(bare)}
    for name, rounds in results.items():
        if name == "bare":
            continue
        # Round by round: the tracked loop minus the bare loop of the same round.
        caller = [wall - bare[i] for i, (wall, _) in enumerate(rounds)]
        cpu = [c for _, c in rounds]
        out[name] = {
            "caller_us": {"median": statistics.median(caller), "min": min(caller), "max": max(caller)},
            "process_cpu_us": {"median": statistics.median(cpu), "min": min(cpu), "max": max(cpu)},
        }
    return out


def report_rows(summary: dict[str, Any]) -> list[str]:
    rows = [
        f"Per tracked call, {summary['calls']} calls × {summary['rounds']} interleaved rounds "
        f"(bare loop {summary['bare_us']:.2f} µs per call, subtracted):",
        "",
        "| tracked call / exporter | caller's thread µs | process CPU µs (export thread included) |",
        "|---|---|---|",
    ]
    for name, values in summary.items():
        if not isinstance(values, dict) or "caller_us" not in values:
            continue
        c, p = values["caller_us"], values["process_cpu_us"]
        rows.append(
            f"| {name} | {c['median']:.1f} ({c['min']:.1f}–{c['max']:.1f}) "
            f"| {p['median']:.1f} ({p['min']:.1f}–{p['max']:.1f}) |"
        )
    return rows


def auto_rows(auto: dict[str, Any]) -> list[str]:
    t = auto["tracked_minus_untracked_us"]
    rows = [
        "",
        f"An openai chat call through `dt.auto_instrument()`, {auto['calls']} calls × {auto['rounds']} rounds "
        "(a fake OpenAI server on 127.0.0.1):",
        "",
        "| openai call | µs per call |",
        "|---|---|",
    ]
    for name, spread in auto["call_us"].items():
        rows.append(f"| {name} | {spread['median']:.0f} ({spread['min']:.0f}–{spread['max']:.0f}) |")
    rows += [
        "",
        f"Tracked minus untracked (interleaved): {t['median']:.1f} µs ({t['min']:.1f}–{t['max']:.1f}); "
        f"untracked minus not instrumented (sequential): {auto['untracked_minus_plain_us']:.1f} µs.",
    ]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--auto-calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    summary = summarize(run_probe(args.calls, args.rounds))
    summary["auto_instrumented"] = summarize_auto(run_auto_probe(args.auto_calls, args.rounds))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sdk_overhead.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n".join(report_rows(summary) + auto_rows(summary["auto_instrumented"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
