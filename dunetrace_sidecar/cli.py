"""``dunetrace-sidecar``: run the daemon (default), ``validate`` a config file, ``replay`` recorded
requests, or ``healthcheck`` the running daemon (for a container's HEALTHCHECK)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import ssl
import sys
import urllib.request

from dunetrace_sidecar import __version__
from dunetrace_sidecar.config import CONFIG_ENV, Config, ConfigError, load, settings_help_text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dunetrace-sidecar",
        description="Receives an AI agent's OTLP traces and tells you when the agent is failing.",
        epilog=settings_help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="YAML config file (also DUNETRACE_CONFIG)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the daemon (the default)")
    validate = commands.add_parser("validate", help="check a config file and exit (0 when valid)")
    validate.add_argument("--config", dest="validate_config", metavar="FILE", help="YAML config file")
    replay = commands.add_parser(
        "replay",
        help="run translation and detectors over recorded OTLP requests or run events; print the signals",
        description="Backtest detector thresholds: .pb, .pb.gz, OTLP/JSON .json (traces or logs) or run-event "
        ".jsonl files, in the order given, through the daemon's translation and detectors (nothing is stored).",
    )
    replay.add_argument("files", nargs="+", metavar="FILE")
    replay.add_argument("--config", dest="replay_config", metavar="FILE", help="YAML config file (thresholds)")
    replay.add_argument("--json", action="store_true", help="print JSON instead of a table")
    health = commands.add_parser(
        "healthcheck",
        help="ask the running daemon's /healthz on its api.endpoint (HTTPS when api.tls is set); exit 0 on 200",
    )
    health.add_argument("--config", dest="health_config", metavar="FILE", help="YAML config file")
    return parser


def healthcheck(config: Config, timeout: float = 4.0) -> int:
    """The container's health check: the daemon's own settings say where and how to ask."""
    endpoint = config.api.endpoint
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(endpoint.host, endpoint.host)
    scheme = "https" if config.api.tls.enabled else "http"
    url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{endpoint.port}/healthz"
    # Its own listener: the certificate names the service, not 127.0.0.1, and proves nothing here.
    context = ssl._create_unverified_context() if scheme == "https" else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as exc:
        print(f"dunetrace-sidecar healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


def configure_logging(level: str) -> None:
    """``log_level`` applies to the sidecar's own loggers only. Libraries stay at WARNING: at
    DEBUG the LLM and HTTP clients log whole request bodies, which would carry trace content."""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("dunetrace").setLevel(getattr(logging, level.upper()))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config_file = (
        getattr(args, "validate_config", None)
        or getattr(args, "replay_config", None)
        or getattr(args, "health_config", None)
        or args.config
    )
    try:
        config = load(config_file)
    except ConfigError as exc:
        print(f"dunetrace-sidecar: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "validate":
        print(f"configuration ok: {config_file or '(defaults and environment)'}")
        return 0
    if args.command == "healthcheck":
        return healthcheck(config)
    if args.command == "replay":
        from dunetrace_sidecar.replay import ReplayError, run_replay

        try:
            return run_replay(config, args.files, args.json)
        except ReplayError as exc:
            print(f"dunetrace-sidecar replay: {exc}", file=sys.stderr)
            return 2
    configure_logging(config.log_level)
    from dunetrace_sidecar.daemon import serve  # heavy imports only when serving

    return asyncio.run(serve(config, config_file or os.environ.get(CONFIG_ENV) or None))


# Young-generation collections every 50,000 container allocations instead of 700: an export
# allocates thousands of short-lived dicts, lists and facts that die with its request, and at
# the default they were traversed, promoted and traversed again — 9 µs of CPU per span, 0.5
# with this (in-process, the bench's workload). Cyclic garbage waits longer; little of it is made.
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Once started (the daemon, a translation worker): what exists now (modules, config,
    compiled patterns) lives as long as the process, so the collector stops traversing it; and
    young collections are made rarer."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


# The daemon's process also runs a full collection this often. With young collections rare,
# cyclic garbage (an evicted run's state) waits for a full collection, which CPython runs only
# once the old generation has grown by a quarter; until then it lifts pymalloc's high-water
# mark, and pymalloc returns an arena only when it is empty, so RSS kept creeping up under
# sustained load (README "Memory", round 8). A pass over the open runs' objects costs a few ms.
FULL_COLLECTION_INTERVAL_S = 15.0


async def collect_garbage_every(interval: float = FULL_COLLECTION_INTERVAL_S) -> None:
    while True:
        await asyncio.sleep(interval)
        gc.collect()
