"""``DunetraceOTelReceiver``: the spans of an OpenTelemetry provider you already have (OpenLLMetry's
``Traceloop.init(tracer_provider=provider)``, the OTel GenAI instrumentations) become runs of
one agent, with no change to the agent's code::

    DunetraceOTelReceiver.attach(provider, dt, agent_id="my-agent")
    Traceloop.init(app_name="my-agent", tracer_provider=provider)

How a trace becomes a run:

* **One OTel trace is one run, and its run id is the trace id.** The run opens at the trace's
  first LLM or tool span (traces without one — a web app's own requests — make no run) and ends
  when the trace's local root span ends: errored when that span's status is ERROR, as a
  ``policy_violation`` when a ``stop`` policy fired in it.
* A span with ``gen_ai.request.model`` (or ``gen_ai.response.model`` / ``llm.request.model``) is an
  LLM call (``llm_called`` / ``llm_responded``); a span with ``gen_ai.tool.name`` (``tool.name``,
  or OpenLLMetry's ``traceloop.span.kind = tool``) a tool call (``tool_called`` /
  ``tool_responded``). They are recorded through the run's ``RunContext`` as the span ends, with
  the span's own times, so local policies (and the sidecar's, and its live decisions) see them.
* **Content** — ``gen_ai.input.messages`` / ``gen_ai.output.messages``, ``gen_ai.prompt.N.*`` /
  ``gen_ai.completion.N.*``, ``traceloop.entity.input`` / ``output``, tool arguments and results — is
  reduced in this process like any content our SDK sees (hash, length, injection labels); none of
  it is in the spans we send.
* **What the sidecar receives.** The run's spans (scope ``dunetrace.sdk``) are in the same trace
  as your provider's, and each step **repeats the span id of the span it was built from**; the
  run's root is a new parentless span ``invoke_agent {agent_id}`` naming the agent. So if your
  provider exports to the sidecar too, the sidecar sees every step twice under one span id and
  keeps it once (its duplicate handling), whichever copy comes first; the run is the same run
  (one trace), and the agent is ``agent_id`` (a root span's ``gen_ai.agent.name`` outranks a
  workflow or service name).
* **Policies.** A policy is evaluated when the span that triggers it *ends* — the LLM call or the
  tool has already run, so a ``stop`` cannot undo it. The stop is recorded at once (the
  ``dunetrace.policy.triggered`` event, the run's exit reason) and :class:`PolicyViolation` is
  raised when the next span of that trace starts — the agent's next instrumented step (an LLM
  call, a ``@tool``), out of the instrumented call, before it runs. A stop the sidecar decides
  live is raised the same way.

Spans of scope ``dunetrace`` / ``dunetrace.sdk`` (our own, e.g. copies a ``DunetraceOTelExporter``
sends to the same provider) are never read.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import StatusCode

from .._export import SCOPE, RunIdGenerator, StepSpans
from ..policies import PolicyViolation
from ..run_context import RunContext
from .otel import MIRROR_SCOPE, RECEIVER_SOURCE, SOURCE_ATTRIBUTE

if TYPE_CHECKING:
    from ..client import Dunetrace

logger = logging.getLogger("dunetrace")

OUR_SCOPES = frozenset({SCOPE, MIRROR_SCOPE})
MAX_OPEN_RUNS = 1024  # traces whose root never ends here (a remote root) cannot pile up
MAX_ENDED = 4096  # ended traces remembered, so a late span does not reopen its run

_MODEL_KEYS = ("gen_ai.request.model", "gen_ai.response.model", "llm.request.model", "llm.response.model")
_TOOL_KEYS = ("gen_ai.tool.name", "tool.name")
_INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens")
_OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens")
_PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system")
_TOOL_ARGS = ("gen_ai.tool.call.arguments", "tool.arguments", "traceloop.entity.input")
_TOOL_RESULT = ("gen_ai.tool.call.result", "tool.result", "traceloop.entity.output")


class _BorrowedIds(RunIdGenerator):
    """The run's ids, except that a step's span takes the id of the span it was built from."""

    def __init__(self) -> None:
        super().__init__()
        self._next = threading.local()

    def next_span_id(self, span_id: int | None) -> None:
        self._next.span_id = span_id

    def generate_span_id(self) -> int:
        pending = getattr(self._next, "span_id", None)
        if pending is not None:
            self._next.span_id = None
            return int(pending)
        return super().generate_span_id()


class _ClientView:
    """The client as the receiver's runs see it: its policies, engine, exporter and decisions,
    but a tracer whose step spans borrow their source spans' ids (same span processors)."""

    def __init__(self, client: Dunetrace, tracer: Any, ids: _BorrowedIds, steps: StepSpans) -> None:
        self._client_ = client
        self._tracer = tracer
        self._ids = ids
        self._steps = steps

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client_, name)


class _Trace:
    __slots__ = ("pending_raise", "run", "violation")

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.violation: PolicyViolation | None = None  # the stop that ends the run
        self.pending_raise: PolicyViolation | None = None  # raised when the next span starts


class DunetraceOTelReceiver(SpanProcessor):
    """A span processor for your provider: each trace with LLM or tool spans becomes a run of
    ``agent_id`` (default: the trace's workflow name, else the client's default agent)."""

    def __init__(self, dt: Dunetrace, agent_id: str = "") -> None:
        from ..client import __version__

        self._dt = dt
        self._agent_id = agent_id
        self._ids = _BorrowedIds()
        provider = TracerProvider(
            resource=dt._provider.resource,
            shutdown_on_exit=False,
            active_span_processor=dt._processors,
            id_generator=self._ids,
        )
        scope_attributes = {SOURCE_ATTRIBUTE: RECEIVER_SOURCE}
        tracer = provider.get_tracer(SCOPE, __version__, attributes=scope_attributes)
        steps = StepSpans(
            dt._processors,
            provider.resource,
            InstrumentationScope(SCOPE, __version__, None, scope_attributes),
            self._ids,
        )
        self._client = _ClientView(dt, tracer, self._ids, steps)
        self._lock = threading.RLock()
        self._traces: OrderedDict[int, _Trace] = OrderedDict()
        self._ended: OrderedDict[int, None] = OrderedDict()

    @classmethod
    def attach(cls, provider: Any, dt: Dunetrace, agent_id: str = "", *, batch: bool = False) -> DunetraceOTelReceiver:
        """Add a receiver to ``provider``. It records each span as it ends, in the thread that
        ends it (``batch`` is accepted for the published SDK's signature and changes nothing)."""
        receiver = cls(dt, agent_id=agent_id)
        provider.add_span_processor(receiver)
        _traceloop_takes_tracer_provider()
        return receiver

    # --- SpanProcessor ------------------------------------------------------------------------

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        if _ours(span):
            return
        with self._lock:
            trace = self._traces.get(span.context.trace_id)
            stop = trace.pending_raise if trace is not None else None
            if trace is not None:
                trace.pending_raise = None
        if stop is not None:
            raise stop  # the agent's next instrumented step: out of the call, before it runs

    def on_end(self, span: ReadableSpan) -> None:
        if _ours(span) or span.context is None:
            return
        try:
            self._on_end(span)
        except Exception:  # an instrumentation's span must never fail because of us
            logger.debug("Dunetrace: could not record span %s", span.name, exc_info=True)

    def shutdown(self) -> None:
        with self._lock:
            traces = list(self._traces.values())
            self._traces.clear()
        for trace in traces:
            self._finish(trace, None)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # --- spans to run events ------------------------------------------------------------------

    def _on_end(self, span: ReadableSpan) -> None:
        attrs: Mapping[str, Any] = span.attributes or {}
        trace_id = span.context.trace_id
        kind = _kind(attrs)
        is_root = span.parent is None or span.parent.is_remote
        with self._lock:
            if trace_id in self._ended:
                return
            trace = self._traces.get(trace_id)
            if trace is None and kind is not None:
                trace = self._open(trace_id, attrs)
            if trace is not None:
                self._traces.move_to_end(trace_id)
        if trace is None:
            return
        if kind == "llm":
            self._llm(trace, span, attrs)
        elif kind == "tool":
            self._tool(trace, span, attrs)
        if is_root:
            with self._lock:
                self._traces.pop(trace_id, None)
                self._remember_ended(trace_id)
            error = _error_of(span)
            self._finish(trace, error)

    def _open(self, trace_id: int, attrs: Mapping[str, Any]) -> _Trace:
        agent_id = (
            self._agent_id
            or _text(attrs.get("gen_ai.agent.name") or attrs.get("traceloop.workflow.name"))
            or self._dt._default_agent_id
            or "agent"
        )
        remote = self._dt._policy_book.remote
        if remote is not None:
            try:
                remote.refresh(agent_id)
            except Exception:
                logger.debug("Dunetrace: policy refresh could not start", exc_info=True)
        # the view stands in for the client; the trace's id is the run's
        run = RunContext(cast("Dunetrace", self._client), agent_id, run_id=_uuid_of(trace_id))
        decisions = getattr(self._dt, "_decisions", None)
        if decisions is not None:
            try:
                decisions.watch(run)
            except Exception:
                logger.debug("Dunetrace: no live decisions for run %s", run.run_id, exc_info=True)
        trace = _Trace(run)
        self._traces[trace_id] = trace
        while len(self._traces) > MAX_OPEN_RUNS:
            _, oldest = self._traces.popitem(last=False)
            self._finish(oldest, None)
        return trace

    def _llm(self, trace: _Trace, span: ReadableSpan, attrs: Mapping[str, Any]) -> None:
        run = trace.run
        model = _text(_first(attrs, _MODEL_KEYS)) or "unknown"
        prompt = _prompt_of(attrs)
        output, requests = _output_of(attrs)
        finish = _finish_reason(attrs)
        error = _error_of(span)
        with run._lock:
            self._step(
                trace,
                lambda: run.llm_called(
                    model,
                    prompt_tokens=_int(_first(attrs, _INPUT_TOKENS)),
                    provider=_text(_first(attrs, _PROVIDER_KEYS)) or None,
                    prompt=prompt,
                ),
            )
            _backdate(run, "llm", model, span.start_time)
            self._ids.next_span_id(span.context.span_id)
            try:
                self._step(
                    trace,
                    lambda: run.llm_responded(
                        completion_tokens=_int(_first(attrs, _OUTPUT_TOKENS)),
                        reasoning_tokens=_int(attrs.get("gen_ai.usage.reasoning_tokens")),
                        finish_reason="error" if error is not None else finish,
                        output=output,
                        prompt_tokens=_int(_first(attrs, _INPUT_TOKENS)),
                        error=error,
                        tool_calls=requests or None,
                    ),
                )
            finally:
                self._ids.next_span_id(None)

    def _tool(self, trace: _Trace, span: ReadableSpan, attrs: Mapping[str, Any]) -> None:
        run = trace.run
        name = _text(_first(attrs, _TOOL_KEYS) or attrs.get("traceloop.entity.name")) or span.name or "tool"
        args = _first(attrs, _TOOL_ARGS)
        result = _first(attrs, _TOOL_RESULT)
        error = _error_of(span)
        call_id = _text(attrs.get("gen_ai.tool.call.id")) or None
        with run._lock:
            self._step(trace, lambda: run.tool_called(name, _unwrap_args(args), tool_call_id=call_id))
            _backdate(run, "tool", name, span.start_time)
            self._ids.next_span_id(span.context.span_id)
            try:
                self._step(
                    trace,
                    lambda: run.tool_responded(name, success=error is None, error=error, output=result or ""),
                )
            finally:
                self._ids.next_span_id(None)

    @staticmethod
    def _step(trace: _Trace, call: Any) -> None:
        """One RunContext call; a ``stop`` it raises (a local policy, or the sidecar's live
        decision) is kept: it ends the run and is raised at the trace's next span."""
        try:
            call()
        except PolicyViolation as violation:
            if trace.violation is None:
                trace.violation = violation
                trace.pending_raise = violation

    def _finish(self, trace: _Trace, error: BaseException | None) -> None:
        try:
            trace.run._end(trace.violation or error)
        except Exception:
            logger.debug("Dunetrace: could not end run %s", trace.run.run_id, exc_info=True)

    def _remember_ended(self, trace_id: int) -> None:
        self._ended[trace_id] = None
        while len(self._ended) > MAX_ENDED:
            self._ended.popitem(last=False)


# --- OpenLLMetry's Traceloop.init(tracer_provider=...) --------------------------------------------


def _traceloop_takes_tracer_provider() -> None:
    """Our docs write ``Traceloop.init(app_name=..., tracer_provider=provider)``; traceloop-sdk
    (0.62) has no such parameter and instruments with the *global* provider instead. When it is
    installed and lacks the parameter, ``Traceloop.init`` learns it: the provider given becomes the
    global one (if none is set yet), which is the one Traceloop then instruments with."""
    if importlib.util.find_spec("traceloop") is None:
        return
    try:
        from traceloop.sdk import Traceloop
    except Exception:
        return
    init = Traceloop.init
    if getattr(init, "_dunetrace_accepts_tracer_provider", False):
        return
    try:
        if "tracer_provider" in inspect.signature(init).parameters:
            return
    except (TypeError, ValueError):
        return

    @functools.wraps(init)
    def init_with_provider(*args: Any, tracer_provider: Any = None, **kwargs: Any) -> Any:
        if tracer_provider is not None:
            _make_global(tracer_provider)
        return init(*args, **kwargs)

    init_with_provider._dunetrace_accepts_tracer_provider = True  # type: ignore[attr-defined]
    Traceloop.init = staticmethod(init_with_provider)  # type: ignore[method-assign]


def _make_global(provider: Any) -> None:
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if current is provider:
        return
    if isinstance(current, trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    else:
        logger.warning("Dunetrace: a global TracerProvider is already set; OpenLLMetry will use it, not the one given")


# --- reading spans ------------------------------------------------------------------------------


def _ours(span: Any) -> bool:
    scope = getattr(span, "instrumentation_scope", None)
    return scope is not None and scope.name in OUR_SCOPES


def _kind(attrs: Mapping[str, Any]) -> str | None:
    if _first(attrs, _TOOL_KEYS) or attrs.get("traceloop.span.kind") == "tool":
        return "tool"
    if attrs.get("gen_ai.operation.name") == "execute_tool":
        return "tool"
    if _first(attrs, _MODEL_KEYS):
        return "llm"
    return None


def _first(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value not in (None, ""):
            return value
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _int(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def _uuid_of(trace_id: int) -> str:
    import uuid

    return str(uuid.UUID(int=trace_id))


def _json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def _indexed(attrs: Mapping[str, Any], prefix: str) -> dict[int, dict[str, Any]]:
    """``prefix.N.key`` attributes (OpenLLMetry's flattened prompts and completions) by N."""
    out: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[len(prefix) :].partition(".")
        if index.isdigit() and rest:
            out.setdefault(int(index), {})[rest] = value
    return dict(sorted(out.items()))


def _prompt_of(attrs: Mapping[str, Any]) -> Any:
    messages = _json(attrs.get("gen_ai.input.messages"))
    if messages:
        return messages
    flattened = _indexed(attrs, "gen_ai.prompt.")
    if flattened:
        return [item.get("content", "") for item in flattened.values()]
    return attrs.get("gen_ai.prompt") or attrs.get("traceloop.entity.input")


def _output_of(attrs: Mapping[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """The completion (for its hash) and the tool calls it asked for (``{"name", "id", "arguments"}``)."""
    requests: list[dict[str, Any]] = []
    messages = _json(attrs.get("gen_ai.output.messages"))
    if isinstance(messages, list):
        texts = []
        for message in messages:
            parts = message.get("parts") if isinstance(message, dict) else None
            for part in parts if isinstance(parts, list) else ():
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "tool_call":
                    requests.append(_request(part))
                elif part.get("content") is not None:
                    texts.append(_text(part.get("content")))
        return "\n".join(texts), requests
    flattened = _indexed(attrs, "gen_ai.completion.")
    if flattened:
        texts = []
        for item in flattened.values():
            if item.get("content") is not None:
                texts.append(_text(item.get("content")))
            calls = _indexed(item, "tool_calls.")
            requests.extend(_request(call) for call in calls.values())
        return "\n".join(texts), requests
    output = attrs.get("gen_ai.completion") or attrs.get("traceloop.entity.output")
    return output, requests


def _request(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": item.get("name"), "id": item.get("id"), "arguments": item.get("arguments")}


def _finish_reason(attrs: Mapping[str, Any]) -> str | None:
    reasons = attrs.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, (list, tuple)) and reasons:
        return _text(reasons[0])
    if isinstance(reasons, str) and reasons:
        return reasons
    value = attrs.get("gen_ai.completion.0.finish_reason") or attrs.get("llm.response.finish_reason")
    return _text(value) or "stop"


def _unwrap_args(value: Any) -> Any:
    """OpenLLMetry's ``traceloop.entity.input`` envelope ``{"args": [...], "kwargs": {...}}``: the
    keyword arguments (or the positional ones) are the tool's arguments."""
    parsed = _json(value)
    if isinstance(parsed, dict) and set(parsed) <= {"args", "kwargs"} and parsed:
        kwargs, args = parsed.get("kwargs"), parsed.get("args")
        if kwargs:
            return kwargs
        if args:
            return args[0] if len(args) == 1 else args
        return {}
    return value


def _error_of(span: ReadableSpan) -> BaseException | None:
    """An ERROR status as an exception of the span's ``error.type`` (its class name is what the
    run records), or None."""
    if span.status is None or span.status.status_code is not StatusCode.ERROR:
        return None
    name = _text((span.attributes or {}).get("error.type")) or "Error"
    for event in span.events or ():
        if event.name == "exception":
            name = _text((event.attributes or {}).get("exception.type")) or name
            break
    name = name.rsplit(".", 1)[-1] or "Error"
    if not name.isidentifier():
        name = "Error"
    return type(name, (Exception,), {})()


def _backdate(run: RunContext, kind: str, name: str, start_ns: int | None) -> None:
    """The step started when its span did, not when we heard of it (RunContext times a step
    from its call; the span that ended is the one just opened)."""
    if not start_ns:
        return
    for call in reversed(getattr(run, "_open", ())):
        if call.kind == kind and call.name == name and not call.done:
            call.start_ns = min(call.start_ns, int(start_ns), time.time_ns())
            return
