"""``Dunetrace``: the client an agent creates once — runs, the ``@dt.agent()`` decorator,
policies, and the OpenTelemetry pipeline its runs leave by."""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import os
import threading
from collections.abc import Callable, Mapping
from contextvars import Token
from types import TracebackType
from typing import Any, TypeVar, cast

from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from ._decisions import DecisionWatcher, decisions_target
from ._detectors.policy_rules import DEFAULT_PRIORITY, Policy
from ._detectors.prices import DEFAULT_MODEL_PRICES
from ._engine import DetectionEngine
from ._export import SCOPE, StepSpans, build_provider
from .context import _current_run
from .policies import PolicyBook, RemotePolicies
from .run_context import RunContext

logger = logging.getLogger("dunetrace")

F = TypeVar("F", bound=Callable[..., Any])

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("dunetrace")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"


class _RunScope:
    """``dt.run()``: a context manager, sync (``with``) or async (``async with``), yielding the run."""

    __slots__ = ("_client", "_kwargs", "_run", "_token")

    def __init__(self, client: Dunetrace, kwargs: dict[str, Any]) -> None:
        self._client = client
        self._kwargs = kwargs
        self._run: RunContext | None = None
        self._token: Token[RunContext | None] | None = None

    def __enter__(self) -> RunContext:
        kwargs = dict(self._kwargs)
        active = _current_run.get()
        if kwargs.get("parent_run_id") is None and active is not None:
            kwargs["parent_run_id"] = active.run_id  # a run opened inside another is its child
        self._run = self._client._start(**kwargs)
        self._token = _current_run.set(self._run)
        return self._run

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            try:
                _current_run.reset(self._token)
            except ValueError:  # exited in another context than it was entered in
                _current_run.set(None)
            self._token = None
        if self._run is not None:
            try:
                self._run._end(exc)
            except Exception:  # recording the end must never replace the caller's outcome
                logger.debug("Dunetrace: could not record the end of run %s", self._run.run_id, exc_info=True)

    async def __aenter__(self) -> RunContext:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class Dunetrace:
    """The Dunetrace client.

    Runs are OpenTelemetry traces exported over OTLP/HTTP to the sidecar (``127.0.0.1:4318``
    unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` say otherwise).
    ``endpoint`` and ``api_key`` name the sidecar's API (default ``DUNETRACE_ENDPOINT`` /
    ``DUNETRACE_API_KEY``): with both, its policies apply to the runs too.

    ``emit_as_json=True`` also writes every run event as an NDJSON line on stdout (Loki).
    ``span_exporter`` replaces the OTLP exporter (an in-memory exporter in tests, say).

    Live decisions (with ``grpcio``, the ``[grpc]`` extra; ``live_decisions=False`` turns them
    off): each open run is watched on the sidecar's gRPC listener (``decisions_endpoint``, else
    ``DUNETRACE_DECISIONS_ENDPOINT``, else the OTLP endpoint's host on 4317), and what the
    sidecar decides about it acts on it — a ``stop`` raises ``PolicyViolation`` at the next step.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        api_key: str | None = None,
        *,
        emit_as_json: bool = False,
        otel_exporter: Any = None,
        span_exporter: SpanExporter | None = None,
        flush_interval_ms: int | None = None,
        model_prices: Mapping[str, tuple[float, float]] | None = None,
        policy_fetch_timeout: float = 2.0,
        decisions_endpoint: str | None = None,
        live_decisions: bool = True,
        debug: bool = False,
    ) -> None:
        self.endpoint = endpoint if endpoint is not None else os.environ.get("DUNETRACE_ENDPOINT") or None
        self._api_key = api_key or os.environ.get("DUNETRACE_API_KEY") or None
        self._emit_json = bool(emit_as_json)
        self._provider, self._ids, self._processors = build_provider(span_exporter, flush_interval_ms)
        self._tracer = self._provider.get_tracer(SCOPE, __version__)  # the runs' root spans
        self._steps = StepSpans(
            self._processors, self._provider.resource, InstrumentationScope(SCOPE, __version__), self._ids
        )
        # DunetraceOTelExporter (dunetrace.integrations.otel): runs also go to the user's provider.
        self._otel_exporter = otel_exporter
        if otel_exporter is not None:
            otel_exporter._attach(self)
        remote = None
        if self.endpoint and self._api_key:
            remote = RemotePolicies(self.endpoint, self._api_key, timeout=policy_fetch_timeout)
        self._policy_book = PolicyBook(remote)
        self._prices = {**DEFAULT_MODEL_PRICES, **(model_prices or {})}
        self._engine = DetectionEngine()
        self._default_agent_id = os.environ.get("DUNETRACE_AGENT_ID", "")
        # The sidecar's live decisions about each open run (gRPC; needs the [grpc] extra).
        self._decisions: DecisionWatcher | None = None
        if live_decisions:
            if DecisionWatcher.available():
                self._decisions = DecisionWatcher(decisions_target(decisions_endpoint), self._api_key)
            elif decisions_endpoint:
                logger.warning("Dunetrace: live decisions need grpcio (pip install 'dunetrace[grpc]'); off.")
        self._closed = False
        if debug:
            logging.getLogger("dunetrace").setLevel(logging.DEBUG)

    # --- runs ---------------------------------------------------------------------------------

    def run(
        self,
        agent_id: str,
        *,
        user_input: str = "",
        system_prompt: str = "",
        model: str = "unknown",
        tools: list[str] | None = None,
        parent_run_id: str | None = None,
        trace_id: str | None = None,
        conversation_id: str | None = None,
        agent_version: str = "",
    ) -> _RunScope:
        """One agent run: ``with dt.run("my-agent") as run:`` (or ``async with``)."""
        return _RunScope(
            self,
            {
                "agent_id": agent_id,
                "user_input": user_input,
                "model": model,
                "tools": tools,
                "parent_run_id": parent_run_id,
                "trace_id": trace_id,
                "conversation_id": conversation_id,
                "agent_version": agent_version or _version_of(system_prompt, model, tools),
            },
        )

    def _start(self, **kwargs: Any) -> RunContext:
        agent_id = str(kwargs.pop("agent_id") or self._default_agent_id or "agent")
        remote = self._policy_book.remote
        if remote is not None:
            try:
                remote.refresh(agent_id)
            except Exception:  # thread exhaustion and the like: the run starts on what is known
                logger.debug("Dunetrace: policy refresh could not start", exc_info=True)
        run = RunContext(self, agent_id, **kwargs)
        if self._decisions is not None:
            self._decisions.watch(run)
        return run

    def agent(
        self,
        agent_id: str = "",
        *,
        model: str = "unknown",
        tools: list[str] | None = None,
        system_prompt: str = "",
        input_from: str | None = None,
    ) -> Callable[[F], F]:
        """Decorate a function (sync or async) so each call is one run; a normal return is the
        final answer. The first argument (or ``input_from``) is the user input."""

        def decorator(fn: F) -> F:
            name = agent_id or self._default_agent_id or getattr(fn, "__name__", "agent")

            def scope(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _RunScope:
                user_input = _input_of(fn, args, kwargs, input_from)
                return self.run(name, user_input=user_input, model=model, tools=tools, system_prompt=system_prompt)

            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    async with scope(args, kwargs) as run:
                        result = await fn(*args, **kwargs)
                        run.final_answer()
                        return result

                return cast(F, async_wrapper)

            @functools.wraps(fn)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                with scope(args, kwargs) as run:
                    result = fn(*args, **kwargs)
                    run.final_answer()
                    return result

            return cast(F, sync_wrapper)

        return decorator

    # --- auto-instrumentation -------------------------------------------------------------------

    def auto_instrument(self, frameworks: list[str] | None = None) -> None:
        """Track the LLM and HTTP calls made inside runs, with no change to the agent's code:
        ``openai``, ``anthropic``, ``httpx``, ``requests`` (default: those installed). Safe to
        call more than once; uninstalled ones are skipped. See :mod:`dunetrace.auto`."""
        from .auto import auto_instrument

        auto_instrument(frameworks, client=self)

    # --- policies -----------------------------------------------------------------------------

    def add_policy(
        self,
        name: str,
        condition: Mapping[str, Any],
        action: Mapping[str, Any],
        *,
        agent_id: str = "*",
        priority: int = DEFAULT_PRIORITY,
        enabled: bool = True,
    ) -> Policy:
        """A local policy, checked as the sidecar's API checks one (``PolicyError`` names the
        field that is wrong). Evaluated after ``tool_called``, ``llm_responded`` and
        ``tool_responded``; fires once per run, except ``log``."""
        body = {
            "name": name,
            "agent_id": agent_id,
            "condition": condition,
            "action": action,
            "priority": priority,
            "enabled": enabled,
        }
        return self._policy_book.add(body)

    # --- delivery -----------------------------------------------------------------------------

    def flush(self, *, block: bool = True, timeout: float = 5.0) -> None:
        """Export what has ended; ``block=False`` does it on a background thread."""
        if block:
            self._provider.force_flush(int(timeout * 1000))
            return
        threading.Thread(
            target=self._provider.force_flush, args=(int(timeout * 1000),), name="dunetrace-flush", daemon=True
        ).start()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Export everything that has ended (waiting at most ``timeout`` seconds) and stop."""
        if self._closed:
            return
        self._closed = True
        done = threading.Event()

        def close() -> None:
            try:
                if self._decisions is not None:
                    self._decisions.close()
                self._provider.force_flush(int(timeout * 1000))
                self._provider.shutdown()
            finally:
                done.set()

        threading.Thread(target=close, name="dunetrace-shutdown", daemon=True).start()
        done.wait(timeout)


DunetraceClient = Dunetrace  # the published SDK's older name


def _input_of(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], input_from: str | None) -> str:
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return str(args[0]) if args else ""
    arguments = bound.arguments
    value = arguments.get(input_from, "") if input_from is not None else next(iter(arguments.values()), "")
    return value if isinstance(value, str) else str(value)


def _version_of(system_prompt: str, model: str, tools: list[str] | None) -> str:
    """A short digest of what defines the agent (prompt, model, tools), so its runs group by version."""
    if not system_prompt and model in ("", "unknown") and not tools:
        return ""
    text = "\x00".join([system_prompt or "", model or "", *sorted(tools or [])])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
