"""The daemon's lifecycle: start every component in order, drain and stop them in reverse.

Shutdown order (SIGTERM / SIGINT): refuse new exports, let in-flight ones finish (their
batches are committed before they answer), stop the listeners, then drain and close the
store. A start that fails halfway tears down what had started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from typing import Any

import grpc
from aiohttp import web

from detectors.base import Signal
from detectors.engine import DetectionEngine
from detectors.events import RunEvent
from dunetrace_sidecar.alerts import SLACK, WEBHOOK, AlertDispatcher, Destination
from dunetrace_sidecar.api import SdkBackend, build_api_app
from dunetrace_sidecar.baseline import BaselineCache
from dunetrace_sidecar.cli import collect_garbage_every, tune_gc
from dunetrace_sidecar.config import SETTINGS, Config, ConfigError, Endpoint, TlsConfig, load
from dunetrace_sidecar.decisions import DecisionsService
from dunetrace_sidecar.metrics import Metrics
from dunetrace_sidecar.pipeline import Pipeline
from dunetrace_sidecar.policies import PolicyBook, PolicyService
from dunetrace_sidecar.tls import ServerTls, TlsError
from dunetrace_sidecar.translation import Translator, translation_processes
from explain.analyzer import build_analyzer
from explain.langfuse_client import LangfuseClient
from explain.service import ExplainService
from receiver.admission import Admission
from receiver.content import Hasher
from receiver.errors import BAD_HTTP, retry_after_header
from receiver.grpc_server import build_grpc_server
from receiver.http_server import LINGERING_TIME_SECONDS, ServerLog, build_otlp_app
from store.duckdb_store import DuckStore

log = logging.getLogger("dunetrace.daemon")

GRACE_SECONDS = 10.0


def cap_connections(server: web.Server, limit: int, retry_after_seconds: int) -> None:
    """Past ``limit`` open connections, a new one is answered 503 + Retry-After and closed at
    once, before anything is read: unfinished uploads cannot exhaust the process's files.

    Over TLS aiohttp hears of a connection once its handshake is done, so the answer goes out
    encrypted like any other; a handshake that does not finish is cut off by the listener
    after ``receiver.read_timeout_seconds``."""
    accept = server.connection_made
    body = b'{"error": {"code": "too_many_connections", "message": "retry shortly"}}'
    refusal = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Retry-After: {retry_after_header(retry_after_seconds)}\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    def connection_made(handler: Any, transport: asyncio.Transport) -> None:
        accept(handler, transport)
        if len(server.connections) > limit:
            transport.write(refusal)
            handler.force_close()

    server.connection_made = connection_made  # type: ignore[method-assign]


def _bound_port(server: asyncio.Server) -> int:
    for sock in server.sockets:
        return int(sock.getsockname()[1])
    raise RuntimeError("listener has no socket")


CONFIG_POLL_SECONDS = 1.0
TLS_POLL_SECONDS = 1.0  # how soon replaced certificate files are used (os.stat of 2-3 files)


class Daemon:
    def __init__(self, config: Config, config_file: str | None = None) -> None:
        self.config = config
        self.config_file = config_file
        self.metrics = Metrics()
        self.store = DuckStore(
            config.store.path,
            on_write=self.metrics.store_write.observe,
            memory_limit=config.store.memory_limit,
            retention_s=config.store.retention_hours * 3600,
            on_expire=self.metrics.runs_expired.inc,
        )
        self.baselines = baselines = BaselineCache(self.store.recent_completed_steps)
        self.policies = PolicyService(PolicyBook([], config.model_prices), self.store)
        self.alerts = build_dispatcher(config, self.store, self.metrics)
        self.translator = Translator(
            Hasher(config.privacy.hash_key or None),
            translation_processes(config.receiver.translation_processes),
            config.log_level,
        )
        self.pipeline = Pipeline(
            self.store,
            self.translator,
            DetectionEngine(config.detectors, baselines.p75),
            baselines,
            default_agent_id=config.runs.default_agent_id,
            stall_timeout_seconds=config.runs.stall_timeout_seconds,
            max_queued_events=config.receiver.max_queued_events,
            max_open_runs=config.runs.max_open_runs,
            metrics=self.metrics,
            policies=self.policies.book,
            alerts=self.alerts,
            alert_agent_wait_seconds=config.alerts.agent_wait_seconds,
            end_grace_seconds=config.runs.end_grace_seconds,
        )
        self.langfuse = (
            LangfuseClient(
                config.langfuse.base_url,
                config.langfuse.public_key,
                config.langfuse.secret_key,
                config.langfuse.timeout_seconds,
            )
            if config.langfuse.configured
            else None
        )
        self.explainer = ExplainService(
            self.store,
            self.langfuse,
            build_analyzer(config.explain),
            prompt_label=config.langfuse.prompt_label,
            cache_seconds=config.explain.cache_seconds,
        )
        self._grpc: grpc.aio.Server | None = None
        self._runners: list[web.AppRunner] = []
        self._listeners: list[asyncio.Server] = []
        self._tls: list[ServerTls] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.addresses: dict[str, Endpoint] = {}

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException as exc:
            log.error("startup failed: %s", exc)
            await self.shutdown()
            raise

    async def _start(self) -> None:
        cfg = self.config
        log.debug("settings: %s", settings_summary(cfg))
        await asyncio.get_running_loop().run_in_executor(None, self.store.open)
        await asyncio.get_running_loop().run_in_executor(None, self.policies.load)
        log.info(
            "store open path=%s schema_version=%d policies=%d",
            cfg.store.path,
            self.store.schema_version,
            len(self.policies.book.all()),
        )

        self.translator.start()
        log.info("translation processes=%d", self.translator.processes)

        receiver_tls = self._server_tls("receiver", cfg.receiver.tls)
        api_tls = self._server_tls("api", cfg.api.tls)
        self._warn_about_clear_text()

        admission = Admission(cfg.receiver.max_inflight_requests, cfg.receiver.max_inflight_bytes)
        self._grpc = build_grpc_server(
            self.pipeline,
            cfg.receiver.max_grpc_message_bytes,
            cfg.receiver.retry_after_seconds,
            admission,
            cfg.receiver.keys,
            handshake_timeout_seconds=cfg.receiver.read_timeout_seconds,
        )
        # Live decisions for our SDK share the gRPC listener; they are the API's, so its keys.
        decisions = DecisionsService(self.pipeline.decisions, self._stored_decisions, cfg.api.keys, self.metrics)
        self._grpc.add_generic_rpc_handlers(decisions.handlers())
        grpc_ep = cfg.receiver.grpc_endpoint
        try:
            if receiver_tls is not None:
                port = self._grpc.add_secure_port(str(grpc_ep), receiver_tls.grpc_credentials())
            else:
                port = self._grpc.add_insecure_port(str(grpc_ep))
        except RuntimeError as exc:  # grpcio raises instead of returning 0 when the bind fails
            raise OSError(f"cannot listen on {grpc_ep} (otlp_grpc): {exc}") from None
        await self._grpc.start()
        self._listening("otlp_grpc", Endpoint(grpc_ep.host, port), receiver_tls)

        otlp_app = build_otlp_app(
            self.pipeline,
            cfg.receiver.max_http_body_bytes,
            cfg.receiver.retry_after_seconds,
            admission,
            cfg.receiver.read_timeout_seconds,
            cfg.receiver.keys,
        )
        await self._serve(
            "otlp_http",
            otlp_app,
            cfg.receiver.http_endpoint,
            cfg.receiver.max_connections,
            LINGERING_TIME_SECONDS,
            # what is not HTTP at all is refused by aiohttp itself: counted like the other refusals
            on_bad_http=lambda: self.pipeline.note_refused("http", "unknown", BAD_HTTP.name),
            tls=receiver_tls,
            auto_decompress=False,  # receiver/http_server.py inflates, strictly and within bounds
        )

        if not cfg.api.endpoint.is_loopback and not cfg.api.keys and not cfg.api.tls.mutual:
            log.warning(
                "INSECURE: the API listens on %s with no keys (api.allow_insecure is set); "
                "anyone who can reach it can read it",
                cfg.api.endpoint,
            )
        await self._serve(
            "api",
            build_api_app(
                self.store,
                cfg.api.keys,
                self.explainer,
                self.metrics,
                self.policies,
                loopback_only=cfg.api.endpoint.is_loopback,
                end_pending=self.pipeline.end_pending,
                sdk=SdkBackend(
                    export=self.pipeline.export_sdk,
                    check_capacity=self.pipeline.check_capacity,
                    max_body_bytes=cfg.receiver.max_http_body_bytes,
                    retry_after_seconds=cfg.receiver.retry_after_seconds,
                    read_timeout_seconds=cfg.receiver.read_timeout_seconds,
                    detector_settings=lambda: self.pipeline.engine.settings,  # follows config reloads
                    p75_steps=self.baselines.p75,
                    signing_secret=cfg.policies.signing_secret,
                ),
            ),
            cfg.api.endpoint,
            max(cfg.receiver.max_connections // 4, 8),
            tls=api_tls,
        )
        log.info(
            "explain: langfuse=%s llm=%s",
            "configured" if self.langfuse else "off",
            self.explainer.analyzer_name or "off (deterministic explanations)",
        )

        interval = min(max(cfg.runs.stall_timeout_seconds / 4, 0.05), 5.0)
        self._tasks.append(asyncio.create_task(self.pipeline.read_stored_run_ids(), name="stored-run-ids"))
        self._tasks.append(asyncio.create_task(self.pipeline.run_sweeper(interval), name="stall-sweeper"))
        self._tasks.append(asyncio.create_task(self.pipeline.run_timers(0.25), name="run-timers"))
        self._tasks.append(asyncio.create_task(collect_garbage_every(), name="full-collections"))
        if self.config_file:
            self._tasks.append(asyncio.create_task(self._watch_config(self.config_file), name="config-watch"))
        if self._tls:
            self._tasks.append(asyncio.create_task(self._watch_tls(), name="tls-watch"))
        if self.alerts is not None:
            self._tasks.append(asyncio.create_task(self.alerts.run(), name="alerts"))
            log.info("alerts: %s", ", ".join(sorted(self.alerts.destinations)))
        log.info("ready")

    async def _serve(
        self,
        name: str,
        app: web.Application,
        endpoint: Endpoint,
        max_connections: int,
        lingering_time: float = 10.0,
        on_bad_http: Callable[[], None] | None = None,
        tls: ServerTls | None = None,
        auto_decompress: bool = True,
    ) -> None:
        runner = web.AppRunner(
            app,
            auto_decompress=auto_decompress,
            access_log=None,
            logger=ServerLog(name, on_bad_http),
            handle_signals=False,
            shutdown_timeout=GRACE_SECONDS,
            lingering_time=lingering_time,
            # A connection must complete a request's headers this soon after connecting or after
            # its last answer (aiohttp's idle timer runs from the connection's start).
            keepalive_timeout=self.config.receiver.read_timeout_seconds,
        )
        await runner.setup()
        assert runner.server is not None
        cap_connections(runner.server, max_connections, self.config.receiver.retry_after_seconds)
        self._runners.append(runner)
        # The listening socket is ours rather than a web.TCPSite's, for the one option TCPSite
        # does not pass on: a TLS handshake must finish within the read timeout, as a request's
        # headers must (asyncio's default is 60 s, uncounted by cap_connections).
        tls_options: dict[str, Any] = {}
        if tls is not None:
            tls_options = {
                "ssl": tls.context,
                "ssl_handshake_timeout": float(self.config.receiver.read_timeout_seconds),
            }
        try:
            server = await asyncio.get_running_loop().create_server(
                runner.server, endpoint.host, endpoint.port, reuse_address=True, backlog=128, **tls_options
            )
        except OSError as exc:
            raise OSError(f"cannot listen on {endpoint} ({name}): {exc.strerror}") from None
        self._listeners.append(server)
        self._listening(name, Endpoint(endpoint.host, _bound_port(server)), tls)

    def _listening(self, name: str, endpoint: Endpoint, tls: ServerTls | None = None) -> None:
        self.addresses[name] = endpoint
        mode = "" if tls is None else " tls=mutual" if tls.files.mutual else " tls=on"
        log.info("listening %s=%s%s", name, endpoint, mode)

    def _server_tls(self, name: str, tls: TlsConfig) -> ServerTls | None:
        if not tls.enabled:
            return None
        try:
            server_tls = ServerTls(name, tls.files())
        except TlsError as exc:  # checked when the config was loaded; changed since
            raise ConfigError(f"{name}.tls.{exc.field}: {exc}") from None
        self._tls.append(server_tls)
        return server_tls

    def _stored_decisions(self, run_id: str) -> tuple[list[RunEvent], list[Signal]]:
        """A watched run's stored events and signals (executor thread): the decisions so far."""
        return self.store.run_events(run_id), self.store.run_signals(run_id)

    def _warn_about_clear_text(self) -> None:
        """Keys sent over a network without TLS can be read on the way."""
        cfg = self.config
        groups = (
            (
                "receiver.keys",
                cfg.receiver.keys,
                cfg.receiver.tls,
                (cfg.receiver.grpc_endpoint, cfg.receiver.http_endpoint),
            ),
            ("api.keys", cfg.api.keys, cfg.api.tls, (cfg.api.endpoint,)),
        )
        for setting, keys, tls, endpoints in groups:
            exposed = [str(e) for e in endpoints if not e.is_loopback]
            if keys and exposed and not tls.enabled:
                log.warning(
                    "%s travel in clear text to %s (no TLS): set %s.tls.cert_file and key_file, or terminate TLS "
                    "in front",
                    setting,
                    ", ".join(exposed),
                    setting.partition(".")[0],
                )

    async def _watch_tls(self) -> None:
        """Replaced certificate files (cert-manager renewing a Secret) serve new connections."""
        while True:
            await asyncio.sleep(TLS_POLL_SECONDS)
            for server_tls in self._tls:
                server_tls.poll()

    async def shutdown(self) -> None:
        """Idempotent; safe after a partial start."""
        self.pipeline.begin_shutdown()
        await self.pipeline.finish_ending_runs(everything=True)  # no end-of-run judgement is lost
        for task in self._tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._grpc is not None:
            await self._grpc.stop(GRACE_SECONDS)  # in-flight exports finish, new ones are refused
            self._grpc = None
        for listener in self._listeners:
            listener.close()  # stop accepting
        self._listeners.clear()
        for runner in reversed(self._runners):
            await runner.cleanup()  # waits for in-flight requests
        self._runners.clear()
        if self.langfuse is not None:
            await self.langfuse.close()
        await asyncio.get_running_loop().run_in_executor(None, self.translator.close)
        await asyncio.get_running_loop().run_in_executor(None, self.store.close)
        log.info("stopped")

    # --- hot reload of detector settings ------------------------------------------------------

    def reload(self, reason: str) -> bool:
        """Re-read the config file; detector settings take effect at once, a bad file changes nothing."""
        try:
            new = load(self.config_file)
        except ConfigError as exc:
            log.error("config reload rejected (%s): %s; keeping the running configuration", reason, exc)
            return False
        if new.detectors != self.config.detectors:
            self.pipeline.reconfigure(new.detectors)
            log.info("config reloaded (%s): detector settings updated", reason)
        else:
            log.info("config reloaded (%s): detector settings unchanged", reason)
        if replace(new, detectors=self.config.detectors) != self.config:
            log.warning("config reloaded (%s): settings outside `detectors` change only on restart", reason)
        self.config = replace(self.config, detectors=new.detectors)
        return True

    async def _watch_config(self, path: str) -> None:
        """Reload when the file changes (its mtime, size or inode), polled: works on every filesystem."""
        last = _file_stamp(path)
        while True:
            await asyncio.sleep(CONFIG_POLL_SECONDS)
            stamp = _file_stamp(path)
            if stamp != last and stamp is not None:
                last = stamp
                self.reload("file changed")


def settings_summary(config: Config) -> str:
    """The settings in force, secrets left out (for a debug line)."""
    shown = []
    for setting in SETTINGS:
        if setting.secret:
            continue
        value: Any = config
        for name in setting.path.split("."):  # receiver.tls.cert_file: config.receiver.tls.cert_file
            value = getattr(value, name)
        shown.append(f"{setting.path}={value}")
    return " ".join(shown)


def build_dispatcher(config: Config, store: DuckStore, metrics: Metrics) -> AlertDispatcher | None:
    alerts = config.alerts
    destinations = {}
    if alerts.slack_webhook_url:
        destinations[SLACK] = Destination(SLACK, alerts.slack_webhook_url, alerts.slack_min_severity)
    if alerts.webhook_url:
        destinations[WEBHOOK] = Destination(
            WEBHOOK, alerts.webhook_url, alerts.webhook_min_severity, alerts.webhook_secret
        )
    if not destinations:
        return None
    return AlertDispatcher(
        store,
        destinations,
        metrics,
        dashboard_url=alerts.dashboard_url,
        max_attempts=alerts.max_attempts,
        timeout_seconds=alerts.timeout_seconds,
    )


def _file_stamp(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None  # mid-replace by an editor: look again next time
    return (info.st_mtime_ns, info.st_size, info.st_ino)


async def serve(config: Config, config_file: str | None = None) -> int:
    daemon = Daemon(config, config_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload, "SIGHUP")
    try:
        await daemon.start()
    except Exception:  # logged by start(); e.g. a port taken, the DuckDB file locked by another process
        return 1
    tune_gc()
    await stop.wait()
    log.info("shutting down")
    await daemon.shutdown()
    return 0


def free_port() -> int:
    """For tests and tools: a port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
