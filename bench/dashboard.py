"""``python -m bench.dashboard``: how long the dashboard's pages take to render with 10,000 runs
in the store, against the same pages over a store holding one run, measured in the same run.

Two daemons side by side on 127.0.0.1, each with the docs' three policies and one tool-loop run
(its signal and run pages are the detail pages measured). The full one also holds ``--runs``
bench traces (``bench/loadgen.py``: 8 agents, starts spread over the last 30 days, ~20 % tool
loops, ~10 % failed tool calls), sent over OTLP/gRPC and acknowledged after commit.

Headless Chromium (the browser tests' launcher) measures each page, interleaved between the
daemons, ``--rounds`` times:

- **load**: a fresh document (the address typed in) until the app says this page's content is
  on it (its ``dunetrace:rendered`` performance mark), from the navigation's start;
- **navigate**: a click-like hash change from another page until the same event, plus one
  animation frame (layout included).

Printed: per page, the median and range in ms for both stores, and their ratio. The issue's
target is under 200 ms for every page with 10,000 runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.loadgen import Daemon, GrpcExporter, Trace, build_trace, export_request

RESULTS = Path(__file__).resolve().parent / "results"
AGENTS = [f"bench-agent-{i}" for i in range(8)]
DAY_NS = 86_400 * 1_000_000_000
TRACES_PER_REQUEST = 50

# The docs' three policy examples (the seed's "Local policies"), as the API takes them.
LOOP_FIX = "Stop repeating tool calls. Summarise what you know and answer directly."
POLICIES = (
    {
        "name": "cap tool calls",
        "agent_id": "*",
        "condition": {"trigger": "tool_call_count", "operator": "gt", "value": 5},
        "action": {"type": "stop"},
    },
    {
        "name": "cost cap",
        "agent_id": "*",
        "condition": {"trigger": "cost_usd", "operator": "gt", "value": 0.50},
        "action": {"type": "switch_model", "params": {"model": "gpt-4o-mini"}},
    },
    {
        "name": "loop fix",
        "agent_id": "*",
        "condition": {"trigger": "signal", "operator": "eq", "value": "TOOL_LOOP"},
        "action": {"type": "inject_prompt", "params": {"prompt": LOOP_FIX}},
    },
)

NAVIGATE_JS = """
const [hash, done] = arguments;
const t0 = performance.now();
window.addEventListener(
  "dunetrace:rendered",
  () => requestAnimationFrame(() => done(performance.now() - t0)),
  { once: true }
);
location.hash = hash;
"""

LOADED_JS = """
const app = document.getElementById("app");
if (!app || !app.dataset.rendered) return null;
const marks = performance.getEntriesByName("dunetrace:rendered");
return marks.length ? marks[marks.length - 1].startTime : null;
"""


def with_agent(trace: Trace, agent: str) -> Trace:
    root, *rest = trace.spans
    attrs = {**root.attrs, "gen_ai.agent.name": agent}
    return dataclasses.replace(trace, spans=(dataclasses.replace(root, attrs=attrs), *rest))


def bench_traces(runs: int, seed: int = 7) -> list[Trace]:
    rng = random.Random(seed)
    now = time.time_ns()
    traces = []
    for i in range(runs):
        loop = rng.random() < 0.2
        start = now - rng.randrange(30 * DAY_NS)
        calls = rng.randint(3, 5) if loop else rng.randint(1, 4)
        trace = build_trace(rng, start, calls, loop, (not loop) and rng.random() < 0.1)
        traces.append(with_agent(trace, AGENTS[i % len(AGENTS)]))
    return traces


def fill(daemon: Daemon, traces: list[Trace]) -> None:
    exporter = GrpcExporter(daemon.address("otlp_grpc"), timeout=120)
    try:
        for i in range(0, len(traces), TRACES_PER_REQUEST):
            spans = [s for t in traces[i : i + TRACES_PER_REQUEST] for s in t.spans]
            body = export_request(spans).SerializeToString()
            outcome = exporter.send_bytes(body)
            if not outcome.acked:
                raise RuntimeError(f"the fill was refused: {outcome}")
    finally:
        exporter.close()


def api(daemon: Daemon, path: str, body: Mapping[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"http://{daemon.address('api')}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"} if body is not None else {},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_stored(daemon: Daemon, runs: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agents = api(daemon, "/v1/agents?since=0")["agents"]
        settled = sum(a["run_count"] - a["running_runs"] for a in agents)
        if settled >= runs:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{runs} runs were not all settled within {timeout:.0f} s")


def prepare(daemon: Daemon, traces: list[Trace], probe: Trace) -> dict[str, str]:
    """The store's content, then the hash routes of the pages to measure."""
    for policy in POLICIES:
        api(daemon, "/v1/policies", policy)
    fill(daemon, [*traces, probe])
    wait_stored(daemon, len(traces) + 1)
    signals = api(daemon, f"/v1/signals?run_id={probe.run_id}&failure_type=TOOL_LOOP")["signals"]
    if not signals:
        raise RuntimeError("the probe run raised no TOOL_LOOP signal")
    return {
        "overview (24 h)": "#/",
        "overview (all)": "#/?window=all",
        "signals": "#/signals",
        "signal": "#/signals/" + signals[0]["signal_id"],
        "runs": "#/runs",
        "run": "#/runs/" + probe.run_id,
        "policies": "#/policies",
    }


def measure_load(driver: Any, base: str, route: str, timeout: float = 30) -> float:
    driver.get("about:blank")
    driver.get(base + "/" + route)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = driver.execute_script(LOADED_JS)
        if started is not None:
            return float(started)
        time.sleep(0.005)
    raise RuntimeError(f"{route} did not render within {timeout:.0f} s")


def measure_navigate(driver: Any, base: str, route: str, previous: str) -> float:
    """From ``previous`` (a different page, rendered) to ``route``."""
    measure_load(driver, base, previous)
    return float(driver.execute_async_script(NAVIGATE_JS, route))


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run(runs: int, rounds: int) -> dict[str, Any]:
    from tests.dashboard.browser import chromium_available, start_chromium

    if not chromium_available():
        raise SystemExit("needs Debian's chromium and chromium-driver (make system-packages)")
    probe = build_trace(random.Random(99), time.time_ns(), 4, True, False)
    traces = bench_traces(runs)
    results: dict[str, Any] = {"runs": runs, "rounds": rounds, "pages": {}}
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        daemons = {"one run": Daemon(Path(tmp) / "small"), f"{runs} runs": Daemon(Path(tmp) / "full")}
        driver = None
        try:
            routes: dict[str, dict[str, str]] = {}
            for name, daemon in daemons.items():
                daemon.start()
                started = time.monotonic()
                routes[name] = prepare(daemon, traces if daemon is daemons[f"{runs} runs"] else [], probe)
                results[f"fill seconds ({name})"] = round(time.monotonic() - started, 1)
            driver = start_chromium()
            times: dict[tuple[str, str, str], list[float]] = {}
            pages = list(routes["one run"])
            for _ in range(rounds):
                for name, daemon in daemons.items():
                    base = f"http://{daemon.address('api')}"
                    for i, page in enumerate(pages):
                        route = routes[name][page]
                        previous = routes[name][pages[i - 1]] if pages[i - 1] != page else "#/policies"
                        times.setdefault((page, name, "load"), []).append(measure_load(driver, base, route))
                        times.setdefault((page, name, "navigate"), []).append(
                            measure_navigate(driver, base, route, previous)
                        )
            for (page, name, how), values in times.items():
                results["pages"].setdefault(page, {}).setdefault(how, {})[name] = summary(values)
        finally:
            if driver is not None:
                driver.quit()
            for daemon in daemons.values():
                daemon.close()
    return results


def report_rows(results: dict[str, Any]) -> list[str]:
    runs = results["runs"]
    full, small = f"{runs} runs", "one run"
    rows = [
        f"| page | load, {runs} runs (ms) | load, one run (ms) | ratio | navigate, {runs} runs (ms) "
        "| navigate, one run (ms) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(s: dict[str, float]) -> str:
        return f"{s['median']:.0f} ({s['min']:.0f}–{s['max']:.0f})"

    for page, hows in results["pages"].items():
        parts = [page]
        for how in ("load", "navigate"):
            big, base = hows[how][full], hows[how][small]
            parts += [cell(big), cell(base), f"{big['median'] / base['median']:.2f}"]
        rows.append("| " + " | ".join(parts) + " |")
    return rows


def summary_row(results: dict[str, Any]) -> str:
    """The slowest page (median fresh load) for ``python -m bench``'s table."""
    full, small = f"{results['runs']} runs", "one run"
    page, hows = max(results["pages"].items(), key=lambda item: item[1]["load"][full]["median"])
    big, base = hows["load"][full], hows["load"][small]
    return (
        f"| dashboard: slowest page's fresh load with {results['runs']:,} runs in the store ({page}; "
        f"`python -m bench.dashboard` has every page) | {big['median']:.0f} ({big['min']:.0f}–{big['max']:.0f}) ms; "
        f"with one run {base['median']:.0f} ms, ratio {big['median'] / base['median']:.2f} | < 200 ms |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results = run(args.runs, args.rounds)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dashboard.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(report_rows(results)))
    print(summary_row(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
