"""``dt.auto_instrument()``: the LLM and HTTP calls an agent makes inside a run become the run's
steps, with no change to the agent's code.

    dt.auto_instrument()                          # openai, anthropic, httpx, requests — those installed
    dt.auto_instrument(["openai", "anthropic"])   # LLM clients only
    dt.auto_instrument(["httpx", "requests"])     # HTTP clients only

What does the work: the OpenTelemetry instrumentations (the ``[auto]`` extra) —
``opentelemetry-instrumentation-openai-v2`` for ``openai``, OpenLLMetry's
``opentelemetry-instrumentation-anthropic`` for ``anthropic``, and
``opentelemetry-instrumentation-httpx`` / ``-requests`` with their request and response hooks
for HTTP (``httpx`` also covers ``httpx2``, which the ``openai`` 3.x and ``anthropic`` 2.x clients
send with). They are given **this SDK's own tracer provider** (never the global one, and no-op
meter and logger providers), whose spans are never exported: each is read in this process and
replaced by the run's step (docs/sdk-spans.md), content reduced to hashes, lengths and injection
labels. So a prompt or completion never leaves the process, whatever the instrumentation captures.

Rules:

* **Only calls inside a run are tracked** (``dt.run()``, ``@dt.agent()``, the middleware's
  request, the LangChain handler's run). Outside one the tracer provider's sampler drops the span
  at its start: the instrumented call costs a context-variable read and a non-recording span.
* **The instrumentation's span is in the run's trace**: its parent is the run's root span (trace
  id = run id) unless it starts under another span of the run (the HTTP request under the openai
  call). Our tracer does not make its spans current, so they never become the parent of the
  application's own spans. The step span we export replaces it (same trace, same parent, the
  span's own start time; a new span id).
* **One call is counted once.** The openai and anthropic clients send over httpx: the HTTP request
  made while an instrumented LLM call is open in the same context belongs to that call (its body
  only fills in what the LLM span lacks: content to hash, the tools asked for). A LangChain
  handler (``dunetrace.integrations.langchain``) recording an LLM call marks it, and neither
  instrumentation counts it again.
* **Raw HTTP to a known LLM API is an LLM call** (``dunetrace._auto_wire``: ``api.openai.com``,
  ``api.anthropic.com``, and ``/v1/chat/completions``, ``/v1/messages``, ``/v1/responses`` … on any
  host): model, tokens, finish reason, completion and tool requests read from its JSON (or
  server-sent events) in this process. Other HTTP calls are tool calls named after the host (the
  URL hashed), when ``httpx`` / ``requests`` was asked for.
* **Policies** are evaluated on these steps like on any other. A call is recorded when it has
  answered, so a ``stop`` it triggers is raised out of the **next** instrumented call (before it
  is sent) or the agent's next reported step; ``switch_model`` / ``inject_prompt`` land on the run
  (``run.model_override``, ``run.prompt_additions``) at once. A tool call's ``stop`` (HTTP) is
  checked before the request goes out.
* **Idempotent**; uninstalled clients are skipped silently.

Without the instrumentation packages (the light install) ``auto_instrument`` does what it can:
with ``opentelemetry-instrumentation-httpx`` alone, openai and anthropic calls are still counted
from the wire (their HTTP requests); with nothing, it tracks nothing and says once which extra
to install (``pip install 'dunetrace[auto]'``).

The OpenTelemetry instrumentors are process-wide: a library instrumented here cannot be
instrumented again by the application's own OpenTelemetry setup in the same process (and one
instrumented before is left alone, with a warning).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from . import _auto_wire as wire
from .context import _current_run
from .integrations.otel_receiver import (
    _INPUT_TOKENS,
    _MODEL_KEYS,
    _OUTPUT_TOKENS,
    _PROVIDER_KEYS,
    _error_of,
    _finish_reason,
    _first,
    _int,
    _output_of,
    _prompt_of,
    _text,
)
from .policies import PolicyViolation

if TYPE_CHECKING:
    from .client import Dunetrace
    from .run_context import RunContext

logger = logging.getLogger("dunetrace")

FRAMEWORKS = ("openai", "anthropic", "httpx", "requests")
HTTP_SCOPES = frozenset({"opentelemetry.instrumentation.httpx", "opentelemetry.instrumentation.requests"})
MAX_PENDING = 4096  # spans in flight remembered (a span that never ends cannot pile up)

# An LLM call a framework handler (LangChain) is recording in this context: instrumentations
# under it do not count it again.
_framework_llm: ContextVar[bool] = ContextVar("dunetrace_framework_llm", default=False)


def framework_llm_started() -> None:
    """A framework handler started recording an LLM call in this context."""
    _framework_llm.set(True)


def framework_llm_ended() -> None:
    _framework_llm.set(False)


# --- the private pipeline ------------------------------------------------------------------------


class _Pending:
    """A recording span of the private provider, until it ends (and its body is read)."""

    __slots__ = ("ended", "http", "owner", "run", "skip", "start_ns", "token", "tool", "wire", "wire_waiting")

    def __init__(self, run: RunContext, http: bool, start_ns: int) -> None:
        self.run = run
        self.http = http
        self.start_ns = start_ns
        self.ended = False
        self.skip = False  # a framework handler records this call
        self.owner: _Pending | None = None  # the LLM call an HTTP request belongs to
        self.wire: wire.WireCall | None = None
        self.wire_waiting = False  # the response body is still being read (tee)
        self.tool: str | None = None  # a generic HTTP call recorded as a tool call (its name)
        self.token: Token[_Pending | None] | None = None


_open_llm: ContextVar[_Pending | None] = ContextVar("dunetrace_open_llm", default=None)


def _active_run() -> RunContext | None:
    run = _current_run.get()
    if run is None or run._ended:
        return None
    return run


class _InRunSampler(Sampler):
    """Record only while a run is open in this context; outside, a non-recording span."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if _active_run() is None:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "DunetraceInRun"


def _in_run(context: Context | None) -> Context | None:
    """The parent for an instrumentation's span: the run's root, unless the span starts under
    another span of the run's trace (the HTTP request under the LLM call)."""
    run = _active_run()
    if run is None:
        return context
    current = trace.get_current_span(context).get_span_context()
    if current.is_valid and current.trace_id == run._root.get_span_context().trace_id:
        return context
    return run._root_context


class _RunTracer(trace.Tracer):
    """The tracer the instrumentations get: spans parented in the run, never made current."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def start_span(self, name: str, context: Context | None = None, *args: Any, **kwargs: Any) -> Span:
        return self._tracer.start_span(name, _in_run(context), *args, **kwargs)

    def start_as_current_span(self, name: str, context: Context | None = None, *args: Any, **kwargs: Any) -> Any:
        return self._started(name, context, *args, **kwargs)

    @contextmanager
    def _started(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Any = None,
        links: Any = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        span = self._tracer.start_span(
            name, _in_run(context), kind, attributes, links, start_time, record_exception, set_status_on_exception
        )
        try:
            yield span
        except BaseException as exc:
            if span.is_recording():
                if record_exception:
                    span.record_exception(exc)
                if set_status_on_exception:
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            if end_on_exit:
                span.end()


class _RunTracerProvider(trace.TracerProvider):
    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        return _RunTracer(
            self._provider.get_tracer(instrumenting_module_name, instrumenting_library_version, schema_url, attributes)
        )


class _Steps(SpanProcessor):
    """Turns the private provider's spans into the run's steps."""

    def __init__(self, state: _State) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._pending: OrderedDict[int, _Pending] = OrderedDict()

    def pending(self, span: Any) -> _Pending | None:
        context = span.get_span_context() if hasattr(span, "get_span_context") else span.context
        with self._lock:
            return self._pending.get(context.span_id)

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        run = _active_run()
        if run is None:
            return
        scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
        pending = _Pending(run, scope in HTTP_SCOPES, span.start_time or time.time_ns())
        owner = _open_llm.get()
        if owner is not None and not owner.ended and owner.run is run:
            pending.owner = owner  # a request (or a nested call) of the LLM call open here
        elif _framework_llm.get():
            pending.skip = True  # the LangChain handler records this call
        with self._lock:
            self._pending[span.context.span_id] = pending
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
        if not pending.http and pending.owner is None:
            pending.token = _open_llm.set(pending)
        if pending.owner is None and not pending.skip:
            _raise_pending_stop(run)  # the next instrumented call: out of it, before it is sent

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None:
            return
        with self._lock:
            pending = self._pending.pop(span.context.span_id, None)
        if pending is None:
            return
        pending.ended = True
        if pending.token is not None:
            with contextlib.suppress(ValueError):  # ended in another context (a stream consumed elsewhere)
                _open_llm.reset(pending.token)
        try:
            if pending.http:
                self._state.http_ended(pending, span)
            elif pending.owner is None and not pending.skip:
                _record_llm_span(pending, span)
        except Exception:  # an instrumented call must never fail because of us
            logger.debug("Dunetrace: could not record span %s", span.name, exc_info=True)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _raise_pending_stop(run: RunContext) -> None:
    run._raise_if_stopped()


# --- recording ---------------------------------------------------------------------------------


@contextmanager
def _held_stops(run: RunContext) -> Iterator[None]:
    """Record a step that already happened without raising a stop meant for the next one."""
    held = (run._sidecar_stop, run._next_step_stop)
    run._sidecar_stop = run._next_step_stop = None
    try:
        yield
    finally:
        if run._sidecar_stop is None:
            run._sidecar_stop = held[0]
        if run._next_step_stop is None:
            run._next_step_stop = held[1]


def _step(run: RunContext, call: Callable[[], None]) -> None:
    try:
        call()
    except PolicyViolation as violation:
        run._stop_at_next_step(violation)


def _backdate(run: RunContext, kind: str, start_ns: int) -> None:
    with run._lock:
        for call in reversed(run._open):
            if call.kind == kind and not call.done:
                call.start_ns = min(call.start_ns, int(start_ns), time.time_ns())
                return


def record_llm(
    run: RunContext,
    *,
    start_ns: int,
    model: str,
    provider: str | None,
    prompt: Any,
    output: Any,
    tool_calls: Sequence[Any] | None,
    finish_reason: str | None,
    input_tokens: int,
    output_tokens: int,
    reasoning_tokens: int = 0,
    error: BaseException | None = None,
) -> None:
    """One LLM call that has answered, through the run (its policies see it)."""
    with run._lock, _held_stops(run):
        if run._ended:
            return
        _step(
            run,
            lambda: run.llm_called(model or "unknown", prompt_tokens=input_tokens, provider=provider, prompt=prompt),
        )
        _backdate(run, "llm", start_ns)
        _step(
            run,
            lambda: run.llm_responded(
                completion_tokens=output_tokens,
                reasoning_tokens=reasoning_tokens,
                finish_reason="error" if error is not None else finish_reason,
                output=output,
                prompt_tokens=input_tokens,
                error=error,
                tool_calls=list(tool_calls) if tool_calls else None,
            ),
        )


def _record_llm_span(pending: _Pending, span: ReadableSpan) -> None:
    attrs: Mapping[str, Any] = span.attributes or {}
    if attrs.get("gen_ai.operation.name") in ("embeddings", "create_embedding"):
        return
    model = _text(_first(attrs, _MODEL_KEYS))
    if not model and attrs.get("gen_ai.operation.name") is None:
        return  # not an LLM call
    body = pending.wire if pending.wire is not None and pending.wire.response_read else None
    prompt = _prompt_of(attrs)
    output, requests = _output_of(attrs)
    if body is not None:  # what the span lacks (openai-v2 captures no content), from the HTTP body
        prompt = prompt if prompt else body.prompt
        if not output and not requests:
            output, requests = body.output, body.tool_calls
    error = _error_of(span)
    reasons = attrs.get("gen_ai.response.finish_reasons")
    finish = _finish_reason(attrs) if reasons or body is None else (body.finish_reason or "stop")
    record_llm(
        pending.run,
        start_ns=span.start_time or pending.start_ns,
        model=model or (body.model if body else ""),
        provider=_text(_first(attrs, _PROVIDER_KEYS)) or None,
        prompt=prompt,
        output=output,
        tool_calls=requests,
        finish_reason=finish,
        input_tokens=_int(_first(attrs, _INPUT_TOKENS)) or (body.input_tokens if body else 0),
        output_tokens=_int(_first(attrs, _OUTPUT_TOKENS)) or (body.output_tokens if body else 0),
        reasoning_tokens=_int(attrs.get("gen_ai.usage.reasoning_tokens")) or (body.reasoning_tokens if body else 0),
        error=error,
    )


def _record_wire(pending: _Pending, end_error: BaseException | None = None) -> None:
    call = pending.wire
    if call is None:
        return
    error: BaseException | None = end_error
    if error is None and call.status is not None and call.status >= 400:
        error = _http_error(call.status)
    record_llm(
        pending.run,
        start_ns=pending.start_ns,
        model=call.model,
        provider=call.provider,
        prompt=call.prompt,
        output=call.output,
        tool_calls=call.tool_calls,
        finish_reason=call.finish_reason or ("stop" if call.response_read else None),
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
        reasoning_tokens=call.reasoning_tokens,
        error=error,
    )


def _http_error(status: int) -> BaseException:
    """An HTTP failure as an exception whose class names it (``HTTPError`` without a status)."""
    return type(f"HTTP{status}" if status else "HTTPError", (Exception,), {})()


# --- the state: what is instrumented -----------------------------------------------------------


class _State:
    """The private pipeline (one per process: the instrumentors are process-wide) and what each
    library is instrumented for."""

    def __init__(self) -> None:
        self.provider = TracerProvider(sampler=_InRunSampler(), shutdown_on_exit=False)
        self.steps = _Steps(self)
        self.provider.add_span_processor(self.steps)
        self.tracer_provider = _RunTracerProvider(self.provider)
        self.done: set[str] = set()  # frameworks auto_instrument has handled
        self.http_libraries: set[str] = set()  # httpx / requests instrumented (for LLM bodies at least)
        self.http_tools: set[str] = set()  # libraries whose other calls are tool calls
        self.raw_llm: set[str] = set()  # libraries whose raw LLM calls count ("httpx" / "requests")
        self.wire_providers: set[str] = set()  # providers whose SDK calls count from the wire (fallback)
        self.warned: set[str] = set()

    # --- hooks (httpx, httpx2, requests) ------------------------------------------------------

    def _counts_raw(self, library: str, call: wire.WireCall) -> bool:
        return library in self.raw_llm or call.provider in self.wire_providers

    def http_request(self, library: str, span: Any, method: str, url: str, body: Any) -> None:
        if not span.is_recording():
            return
        pending = self.steps.pending(span)
        if pending is None:
            return
        endpoint = wire.llm_endpoint(method, url)
        if endpoint is not None:
            call = wire.WireCall(*endpoint)
            wire.read_request(call, body)
            pending.wire = call
            if pending.owner is not None:
                pending.owner.wire = call
                return
            if pending.skip or not self._counts_raw(library, call):
                pending.wire = None
                pending.skip = True
                return
            _raise_pending_stop(pending.run)
            return
        if pending.owner is not None or pending.skip or library not in self.http_tools:
            pending.skip = True
            return
        host = wire.urlsplit(url).hostname or "http"
        pending.tool = host
        run = pending.run
        run.tool_called(host, {"url": url})  # a stop here is raised before the request is sent

    def http_response(
        self, pending: _Pending, status: int | None, stream: Any, headers: Any, body: bytes | None
    ) -> None:
        call = pending.wire
        if call is None:
            if pending.tool is not None:
                self._tool_done(pending, status, None)
            return
        call.status = status
        encoding = wire.header(headers, "content-encoding")
        content_type = wire.header(headers, "content-type")
        if body is not None:
            wire.read_response(call, status, body, encoding, content_type)
            return

        def done(read: bytes | None) -> None:
            pending.wire_waiting = False
            if read is not None:
                wire.read_response(call, status, read, encoding, content_type)
            else:
                call.response_read = False
            if pending.owner is None and pending.ended:
                self._finish_raw(pending)

        pending.wire_waiting = wire.tee_stream(stream, done)

    def http_ended(self, pending: _Pending, span: ReadableSpan) -> None:
        if pending.skip or pending.owner is not None:
            return
        if pending.tool is not None:  # no response: the request failed
            self._tool_done(pending, None, _error_of(span) or _http_error(0))
            return
        if pending.wire is not None and not pending.wire_waiting:
            self._finish_raw(pending, _error_of(span) if pending.wire.status is None else None)

    def _finish_raw(self, pending: _Pending, error: BaseException | None = None) -> None:
        try:
            _record_wire(pending, error)
        except Exception:
            logger.debug("Dunetrace: could not record an LLM call read off the wire", exc_info=True)

    def _tool_done(self, pending: _Pending, status: int | None, error: BaseException | None) -> None:
        name = pending.tool
        if name is None:
            return
        pending.tool = None
        failed = error is not None or status is None or status >= 400
        run = pending.run
        with _held_stops(run):
            _step(
                run,
                lambda: run.tool_responded(
                    name,
                    success=not failed,
                    error=(error or (_http_error(status) if status else None)) if failed else None,
                    output=str(status) if status is not None else "",
                ),
            )

    # --- the libraries ------------------------------------------------------------------------

    def instrument(self, name: str) -> None:
        if name in ("httpx", "requests"):
            self.http_tools.add(name)
            self.raw_llm.add(name)
            self._instrument_http(name, asked=True)
            return
        if importlib.util.find_spec(name) is None:
            return  # not installed: skipped silently
        done = self._instrument_llm_client(name)
        # The client's HTTP requests (httpx underneath): their bodies fill in what the LLM span
        # lacks, and they are the fallback when the client's instrumentation is missing.
        http = self._instrument_http("httpx", asked=False)
        if not done:
            if http:
                self.wire_providers.add(name)
                self._warn_once(
                    f"fallback-{name}",
                    "Dunetrace: %s calls are read from their HTTP requests (streamed answers without "
                    "tokens); install 'dunetrace[auto]' for the %s instrumentation.",
                    name,
                    name,
                )
            else:
                self._warn_once(
                    f"missing-{name}",
                    "Dunetrace: auto_instrument cannot track %s calls without the OpenTelemetry "
                    "instrumentations: pip install 'dunetrace[auto]'.",
                    name,
                )

    def _instrument_llm_client(self, name: str) -> bool:
        try:
            if name == "openai":
                from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

                instrumentor: Any = OpenAIInstrumentor()
            else:
                from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor

                instrumentor = AnthropicInstrumentor()
        except Exception:  # not installed, or not importable with what is installed
            logger.debug("Dunetrace: no OpenTelemetry instrumentation for %s", name, exc_info=True)
            return False
        return self._run_instrumentor(name, instrumentor, {})

    def _instrument_http(self, name: str, *, asked: bool) -> bool:
        """httpx (and httpx2) or requests, with our hooks; True when at least one is instrumented."""
        if name in self.http_libraries:
            return True
        targets: list[tuple[str, Any, dict[str, Any]]] = []
        try:
            if name == "httpx":
                otel_httpx: Any = importlib.import_module("opentelemetry.instrumentation.httpx")

                hooks = self._httpx_hooks()
                if importlib.util.find_spec("httpx") is not None:
                    targets.append(("httpx", otel_httpx.HTTPXClientInstrumentor(), hooks))
                if importlib.util.find_spec("httpx2") is not None and hasattr(otel_httpx, "HTTPX2ClientInstrumentor"):
                    targets.append(("httpx2", otel_httpx.HTTPX2ClientInstrumentor(), hooks))
            elif importlib.util.find_spec("requests") is not None:
                from opentelemetry.instrumentation.requests import RequestsInstrumentor

                targets.append(("requests", RequestsInstrumentor(), self._requests_hooks()))
        except Exception:
            logger.debug("Dunetrace: no OpenTelemetry instrumentation for %s", name, exc_info=True)
            if asked and importlib.util.find_spec(name) is not None:
                self._warn_once(
                    f"missing-{name}",
                    "Dunetrace: auto_instrument cannot track %s calls without the OpenTelemetry "
                    "instrumentations: pip install 'dunetrace[auto]'.",
                    name,
                )
            return False
        done = False
        for label, instrumentor, hooks in targets:
            done = self._run_instrumentor(label, instrumentor, hooks) or done
        if done:
            self.http_libraries.add(name)
        return done

    def _run_instrumentor(self, name: str, instrumentor: Any, kwargs: dict[str, Any]) -> bool:
        from opentelemetry._logs import NoOpLoggerProvider
        from opentelemetry.metrics import NoOpMeterProvider

        if getattr(instrumentor, "_dunetrace", False):
            return True
        if instrumentor.is_instrumented_by_opentelemetry:
            self._warn_once(
                f"taken-{name}",
                "Dunetrace: %s is already instrumented by another OpenTelemetry setup; its calls are not tracked.",
                name,
            )
            return False
        try:
            instrumentor.instrument(
                tracer_provider=self.tracer_provider,
                meter_provider=NoOpMeterProvider(),
                logger_provider=NoOpLoggerProvider(),
                **kwargs,
            )
        except Exception:
            logger.warning("Dunetrace: could not instrument %s", name, exc_info=True)
            return False
        if not instrumentor.is_instrumented_by_opentelemetry:  # dependency conflict: it declined
            return False
        instrumentor._dunetrace = True
        return True

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self.warned:
            self.warned.add(key)
            logger.warning(message, *args)

    # --- hooks --------------------------------------------------------------------------------

    def _httpx_hooks(self) -> dict[str, Any]:
        state = self

        def request_body(stream: Any) -> bytes | None:
            data = getattr(stream, "_stream", None)  # httpx's ByteStream keeps the bytes
            return bytes(data) if isinstance(data, (bytes, bytearray)) else None

        def on_request(span: Any, request: Any) -> None:
            if not span.is_recording():
                return
            method = request[0].decode() if isinstance(request[0], bytes) else str(request[0])
            state.http_request("httpx", span, method, str(request[1]), request_body(request[3]))

        def on_response(span: Any, request: Any, response: Any) -> None:
            if not span.is_recording():
                return
            pending = state.steps.pending(span)
            if pending is not None and not pending.skip:
                state.http_response(pending, int(response[0]), response[2], response[1], None)

        async def on_request_async(span: Any, request: Any) -> None:
            on_request(span, request)

        async def on_response_async(span: Any, request: Any, response: Any) -> None:
            on_response(span, request, response)

        return {
            "request_hook": on_request,
            "response_hook": on_response,
            "async_request_hook": on_request_async,
            "async_response_hook": on_response_async,
        }

    def _requests_hooks(self) -> dict[str, Any]:
        state = self

        def on_request(span: Any, request: Any) -> None:
            if not span.is_recording():
                return
            body = request.body
            state.http_request("requests", span, str(request.method or "GET"), str(request.url), body)

        def on_response(span: Any, request: Any, response: Any) -> None:
            if not span.is_recording():
                return
            pending = state.steps.pending(span)
            if pending is None or pending.skip:
                return
            body = response.content if getattr(response, "_content_consumed", False) else None
            headers = {"content-type": response.headers.get("content-type", "")}  # already decoded
            # stream=True: the body is read as the caller reads it (requests decodes it through ``raw.stream``)
            stream = response.raw if body is None else None
            state.http_response(pending, int(response.status_code), stream, headers, body)

        return {"request_hook": on_request, "response_hook": on_response}


_lock = threading.Lock()
_state: _State | None = None


def _the_state() -> _State:
    global _state
    if _state is None:
        _state = _State()
    return _state


def auto_instrument(frameworks: Sequence[str] | None = None, client: Dunetrace | None = None) -> list[str]:
    """Track the calls of ``frameworks`` (default: all of openai, anthropic, httpx, requests)
    made inside runs. Returns the frameworks handled so far. Safe to call more than once."""
    names = list(FRAMEWORKS) if frameworks is None else [str(name).lower() for name in frameworks]
    with _lock:
        state = _the_state()
        for name in names:
            if name not in FRAMEWORKS:
                logger.warning("Dunetrace: unknown framework %r for auto_instrument (supported: %s)", name, FRAMEWORKS)
                continue
            if name in state.done:
                continue
            state.done.add(name)
            try:
                state.instrument(name)
            except Exception:
                logger.warning("Dunetrace: could not instrument %s", name, exc_info=True)
        return sorted(state.done)


def instrumented() -> dict[str, bool]:
    """Which libraries auto_instrument has put under an OpenTelemetry instrumentation."""
    state = _state
    if state is None:
        return {}
    return {
        "httpx": "httpx" in state.http_libraries,
        "requests": "requests" in state.http_libraries,
        "openai-wire": "openai" in state.wire_providers,
        "anthropic-wire": "anthropic" in state.wire_providers,
    }
