"""LangChain / LangGraph: ``DunetraceCallbackHandler`` turns an agent's invocation into a run::

    from dunetrace import Dunetrace
    from dunetrace.integrations.langchain import DunetraceCallbackHandler

    dt = Dunetrace()
    dt_cb = DunetraceCallbackHandler(dt, agent_id="my-agent", model="gpt-4o-mini")
    result = agent.invoke({"messages": [("human", query)]}, config={"callbacks": [dt_cb]})
    dt_cb.last_run_id   # the run's id, e.g. "b5ed23be-e4f0-43bc-..."

How an invocation becomes a run (``pip install 'dunetrace[langchain]'``):

* **The root chain is the run.** Its LangChain run id is the run id (so the trace id), and it
  ends with the chain: ``final_answer`` when it returns, errored when it raises (``policy_violation``
  for a stop). Inside a ``dt.run()`` / ``@dt.agent()`` / middleware request the handler records into
  that run instead of opening one.
* **Langfuse names the same run.** While the root chain runs, the run's root span is the current
  OpenTelemetry span, so Langfuse's handler (``langfuse.langchain.CallbackHandler``, after ours in
  ``callbacks``) starts its trace under it: ``lf_cb.last_trace_id`` is ``dt_cb.last_run_id`` without
  the dashes. Listed before ours, Langfuse's handler has started its trace already, and the run
  takes that trace's id instead (unless the trace began under a span of the application's own).
  Any other OpenTelemetry span started during the chain joins the run's trace too.
* Chat-model and LLM calls (model, tokens, finish reason, the tools the model asked for), tool
  calls (arguments, result, errors) and retrievals are the run's steps; content is reduced in
  this process (hashes, lengths, injection labels), never sent.
* **With ``dt.auto_instrument()``** the openai / anthropic / HTTP call under a LangChain model call
  is not counted again: the handler marks the call it is recording, and the instrumentation
  leaves it to the handler.
* **Policies** are evaluated on every step; a ``stop`` raises ``PolicyViolation`` out of
  ``invoke()`` (the handler sets ``raise_error``), ``run.model_override`` / ``run.prompt_additions``
  are on ``get_current_run()`` inside the agent's tools.

The handler runs inline (``run_inline``): it does no I/O, and its context is the agent's, which is
what lets the run and the marks above reach the model's and tools' calls in async agents too.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace

from ..auto import framework_llm_ended, framework_llm_started
from ..client import _version_of
from ..context import _current_run
from ..policies import PolicyViolation

if TYPE_CHECKING:
    from ..client import Dunetrace
    from ..run_context import RunContext

try:
    from langchain_core.callbacks.base import BaseCallbackHandler

    _LANGCHAIN = True
except ImportError:  # pragma: no cover - the [langchain] extra is not installed
    _LANGCHAIN = False
    BaseCallbackHandler = object

logger = logging.getLogger("dunetrace")

F = TypeVar("F", bound=Callable[..., Any])

MAX_TRACKED = 10_000  # LangChain run ids remembered per handler (a run that never ends cannot pile up)


def _guarded(hook: F) -> F:
    """A hook that lets a policy's ``PolicyViolation`` through (``raise_error``) and never breaks
    the agent with an error of ours."""

    @functools.wraps(hook)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return hook(*args, **kwargs)
        except PolicyViolation:
            raise
        except Exception:
            logger.debug("Dunetrace: LangChain hook %s failed", hook.__name__, exc_info=True)
            return None

    return guarded  # type: ignore[return-value]


@dataclass
class _Invocation:
    """One root chain: the run it records into, and whether the handler opened it."""

    run: RunContext
    owned: bool
    run_token: Token[RunContext | None] | None = None
    otel_token: object | None = None
    llm_calls: dict[str, int] = field(default_factory=dict)  # LangChain run id -> the run's LLM call index
    tools: dict[str, str] = field(default_factory=dict)  # LangChain run id -> tool name
    retrievals: dict[str, str] = field(default_factory=dict)  # LangChain run id -> index name


class DunetraceCallbackHandler(BaseCallbackHandler):
    """LangChain callback handler: each root invocation is one Dunetrace run."""

    raise_error = True  # a stop policy's PolicyViolation must reach the caller of invoke()
    run_inline = True  # in the agent's own context (see the module's docstring)

    def __init__(
        self,
        client: Dunetrace,
        agent_id: str | None = None,
        system_prompt: str = "",
        model: str = "unknown",
        tools: list[str] | None = None,
    ) -> None:
        if not _LANGCHAIN:
            raise ImportError("langchain-core is not installed: pip install 'dunetrace[langchain]'")
        super().__init__()
        self._client = client
        self._agent_id = agent_id or ""
        self._model = model
        self._tools = list(tools or [])
        self._version = _version_of(system_prompt, model, tools)
        self._lock = threading.Lock()
        self._roots: dict[str, _Invocation] = {}  # root LangChain run id -> invocation
        self._parents: dict[str, str] = {}  # any LangChain run id -> its root's
        self._last_run_id: str | None = None

    @property
    def last_run_id(self) -> str | None:
        """The run id (UUID with dashes) of the most recent root invocation that ended."""
        return self._last_run_id

    # --- bookkeeping --------------------------------------------------------------------------

    def _track(self, run_id: Any, parent_run_id: Any) -> _Invocation | None:
        """Register a LangChain run under its root; the root's invocation, or None."""
        lc_id, parent = str(run_id or ""), str(parent_run_id or "")
        with self._lock:
            root = self._parents.get(parent, parent) if parent else lc_id
            if lc_id and root in self._roots:
                self._parents[lc_id] = root
                while len(self._parents) > MAX_TRACKED:
                    self._parents.pop(next(iter(self._parents)))
            return self._roots.get(root)

    def _find(self, run_id: Any, parent_run_id: Any = None) -> _Invocation | None:
        with self._lock:
            for key in (str(run_id or ""), str(parent_run_id or "")):
                root = self._parents.get(key)
                if root is not None and root in self._roots:
                    return self._roots[root]
        return None

    def _forget(self, root: str) -> None:
        with self._lock:
            self._roots.pop(root, None)
            for key in [k for k, v in self._parents.items() if v == root]:
                del self._parents[key]

    # --- chains: the run ----------------------------------------------------------------------

    @_guarded
    def on_chain_start(self, serialized: Mapping[str, Any] | None, inputs: Any, **kwargs: Any) -> None:
        run_id, parent = kwargs.get("run_id"), kwargs.get("parent_run_id")
        if parent is not None:
            self._track(run_id, parent)
            return
        try:
            self._open(str(run_id or uuid.uuid4()), inputs, kwargs.get("metadata") or {})
        except Exception:
            logger.warning("Dunetrace: could not open a run for a LangChain invocation", exc_info=True)

    def _open(self, root: str, inputs: Any, metadata: Mapping[str, Any]) -> None:
        ambient = _current_run.get()
        if ambient is not None and not ambient._ended:
            invocation = _Invocation(ambient, owned=False)
        else:
            agent_id = str(metadata.get("agent_id") or self._agent_id or self._client._default_agent_id or "agent")
            run = self._client._start(
                agent_id=agent_id,
                user_input=_user_input(inputs),
                model=self._model,
                tools=self._tools,
                agent_version=self._version,
                run_id=_trace_started_by_langfuse() or root,
            )
            invocation = _Invocation(run, owned=True)
            invocation.run_token = _current_run.set(run)
            # The run's root is the current OTel span while the chain runs: Langfuse's handler
            # (and any span started meanwhile) joins the run's trace.
            invocation.otel_token = otel_context.attach(trace.set_span_in_context(run._root))
        with self._lock:
            self._roots[root] = invocation
            self._parents[root] = root

    @_guarded
    def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
        self._close(kwargs.get("run_id"), None)

    @_guarded
    def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
        self._close(kwargs.get("run_id"), error)

    def _close(self, run_id: Any, error: BaseException | None) -> None:
        root = str(run_id or "")
        with self._lock:
            invocation = self._roots.get(root)
        if invocation is None:
            return
        self._forget(root)
        framework_llm_ended()
        run = invocation.run
        if invocation.otel_token is not None:
            with contextlib.suppress(Exception):
                otel_context.detach(invocation.otel_token)  # type: ignore[arg-type]
        if invocation.run_token is not None:
            try:
                _current_run.reset(invocation.run_token)
            except ValueError:  # ended in another context than it started in
                _current_run.set(None)
        if invocation.owned:
            if error is None and run.exit_reason is None:
                run.final_answer()
            try:
                run._end(error)
            except Exception:
                logger.debug("Dunetrace: could not end run %s", run.run_id, exc_info=True)
        self._last_run_id = run.run_id

    # --- LLM calls ----------------------------------------------------------------------------

    @_guarded
    def on_chat_model_start(self, serialized: Mapping[str, Any] | None, messages: Any, **kwargs: Any) -> None:
        self._llm_start(serialized, _messages_of(messages), kwargs)

    @_guarded
    def on_llm_start(self, serialized: Mapping[str, Any] | None, prompts: Any, **kwargs: Any) -> None:
        self._llm_start(serialized, list(prompts or []), kwargs)

    def _llm_start(self, serialized: Mapping[str, Any] | None, prompt: Any, kwargs: dict[str, Any]) -> None:
        invocation = self._track(kwargs.get("run_id"), kwargs.get("parent_run_id"))
        if invocation is None:
            return
        run = invocation.run
        model = _model_of(serialized, kwargs) or self._model
        framework_llm_started()  # auto-instrumentation leaves this call to us
        with run._lock:
            run.llm_called(model, provider=_provider_of(serialized), prompt=prompt)  # a pending stop raises here
            invocation.llm_calls[str(kwargs.get("run_id"))] = len(run._llm_calls) - 1

    @_guarded
    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        framework_llm_ended()
        invocation = self._find(kwargs.get("run_id"), kwargs.get("parent_run_id"))
        if invocation is None:
            return
        index = invocation.llm_calls.pop(str(kwargs.get("run_id")), None)
        text, tool_calls, finish, usage = _generation_of(response)
        invocation.run.llm_responded(
            completion_tokens=usage.get("output", 0),
            reasoning_tokens=usage.get("reasoning", 0),
            finish_reason=finish,
            output=text,
            prompt_tokens=usage.get("input", 0),
            call_index=index,
            tool_calls=tool_calls or None,
        )

    @_guarded
    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        framework_llm_ended()
        invocation = self._find(kwargs.get("run_id"), kwargs.get("parent_run_id"))
        if invocation is None:
            return
        index = invocation.llm_calls.pop(str(kwargs.get("run_id")), None)
        invocation.run.llm_responded(finish_reason="error", error=error, call_index=index)

    # --- tools --------------------------------------------------------------------------------

    @_guarded
    def on_tool_start(self, serialized: Mapping[str, Any] | None, input_str: str, **kwargs: Any) -> None:
        invocation = self._track(kwargs.get("run_id"), kwargs.get("parent_run_id"))
        if invocation is None:
            return
        name = str((serialized or {}).get("name") or kwargs.get("name") or "tool")
        invocation.tools[str(kwargs.get("run_id"))] = name
        inputs = kwargs.get("inputs")
        args = inputs if isinstance(inputs, Mapping) else input_str
        invocation.run.tool_called(name, args, tool_call_id=_tool_call_id(kwargs))

    @_guarded
    def on_tool_end(self, output: Any, **kwargs: Any) -> None:
        invocation = self._find(kwargs.get("run_id"), kwargs.get("parent_run_id"))
        if invocation is None:
            return
        name = invocation.tools.pop(str(kwargs.get("run_id")), None) or str(kwargs.get("name") or "tool")
        status = getattr(output, "status", None)
        invocation.run.tool_responded(name, success=status != "error", output=_content_of(output))

    @_guarded
    def on_tool_error(self, error: BaseException, **kwargs: Any) -> None:
        invocation = self._find(kwargs.get("run_id"), kwargs.get("parent_run_id"))
        if invocation is None:
            return
        name = invocation.tools.pop(str(kwargs.get("run_id")), None) or str(kwargs.get("name") or "tool")
        invocation.run.tool_responded(name, success=False, error=error)

    # --- retrievals ---------------------------------------------------------------------------

    @_guarded
    def on_retriever_start(self, serialized: Mapping[str, Any] | None, query: str, **kwargs: Any) -> None:
        invocation = self._track(kwargs.get("run_id"), kwargs.get("parent_run_id"))
        if invocation is None:
            return
        ids = (serialized or {}).get("id")
        name = str((serialized or {}).get("name") or (ids[-1] if isinstance(ids, list) and ids else "retriever"))
        invocation.retrievals[str(kwargs.get("run_id"))] = name
        invocation.run.retrieval_called(name, query)

    @_guarded
    def on_retriever_end(self, documents: Any, **kwargs: Any) -> None:
        invocation = self._find(kwargs.get("run_id"), kwargs.get("parent_run_id"))
        if invocation is None:
            return
        name = invocation.retrievals.pop(str(kwargs.get("run_id")), None) or "retriever"
        docs = list(documents or [])
        scores = [_score(doc) for doc in docs]
        known = [s for s in scores if s is not None]
        text = "\n".join(str(getattr(doc, "page_content", "") or "") for doc in docs)
        invocation.run.retrieval_responded(name, len(docs), max(known) if known else None, content=text)

    @_guarded
    def on_retriever_error(self, error: BaseException, **kwargs: Any) -> None:
        invocation = self._find(kwargs.get("run_id"), kwargs.get("parent_run_id"))
        if invocation is None:
            return
        name = invocation.retrievals.pop(str(kwargs.get("run_id")), None) or "retriever"
        invocation.run.retrieval_responded(name, 0)


# --- reading LangChain's objects --------------------------------------------------------------------


def _user_input(inputs: Any) -> str:
    """The human's message of a ``{"messages": [...]}`` input, else the input as text."""
    if isinstance(inputs, Mapping):
        messages = inputs.get("messages")
        if isinstance(messages, Sequence) and not isinstance(messages, str):
            for message in reversed(list(messages)):
                if isinstance(message, tuple) and len(message) == 2 and message[0] in ("human", "user"):
                    return str(message[1])
                if getattr(message, "type", None) == "human":
                    return _content_of(message)
        for key in ("input", "question", "query"):
            if isinstance(inputs.get(key), str):
                return str(inputs[key])
    return inputs if isinstance(inputs, str) else ""


def _messages_of(messages: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for batch in messages or ():
        for message in batch or ():
            out.append({"role": getattr(message, "type", ""), "content": getattr(message, "content", "")})
    return out


def _content_of(value: Any) -> str:
    content = getattr(value, "content", value)
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") if isinstance(p, Mapping) else str(p) for p in content]
        return "".join(str(p) for p in parts)
    return "" if content is None else str(content)


def _model_of(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> str:
    params = kwargs.get("invocation_params") or {}
    metadata = kwargs.get("metadata") or {}
    kw = (serialized or {}).get("kwargs") or {}
    for value in (
        params.get("model"),
        params.get("model_name"),
        metadata.get("ls_model_name"),
        kw.get("model_name"),
        kw.get("model"),
    ):
        if isinstance(value, str) and value:
            return value
    return ""


LANGFUSE_SCOPE = "langfuse-sdk"  # the tracer name of Langfuse's SDK (langfuse._client.constants)


def _trace_started_by_langfuse() -> str | None:
    """The run id when Langfuse's handler, listed before ours, has already started this chain's
    trace: its root observation is the current span, and the run takes that trace's id, so that
    ``last_run_id`` still names the Langfuse trace. Only a root observation: under a span of the
    application's own the trace holds more than this invocation, and the run keeps its own id."""
    span = trace.get_current_span()
    context = span.get_span_context()
    scope = getattr(span, "instrumentation_scope", None)
    if not context.is_valid or not span.is_recording() or getattr(span, "parent", True) is not None:
        return None  # no span, one that has ended (left in the context by an earlier chain), or not a root
    if scope is None or getattr(scope, "name", None) != LANGFUSE_SCOPE:
        return None
    return str(uuid.UUID(int=context.trace_id))


def _provider_of(serialized: Mapping[str, Any] | None) -> str | None:
    ids = (serialized or {}).get("id")
    path = ".".join(str(p) for p in ids) if isinstance(ids, list) else ""
    for provider in ("openai", "anthropic", "mistral", "google", "bedrock", "ollama"):
        if provider in path.lower():
            return provider
    return None


def _tool_call_id(kwargs: Mapping[str, Any]) -> str | None:
    value = kwargs.get("tool_call_id")
    return value if isinstance(value, str) and value else None


def _generation_of(response: Any) -> tuple[str, list[dict[str, Any]], str, dict[str, int]]:
    """(text, tool calls asked for, finish reason, token usage) of an LLMResult's first generation."""
    generations = getattr(response, "generations", None) or []
    generation = generations[0][0] if generations and generations[0] else None
    usage: dict[str, int] = {}
    if generation is None:
        return "", [], "stop", usage
    message = getattr(generation, "message", None)
    text = _content_of(message) if message is not None else str(getattr(generation, "text", "") or "")
    tool_calls = [
        {"name": call.get("name"), "id": call.get("id") or "", "arguments": call.get("args")}
        for call in (getattr(message, "tool_calls", None) or [])
        if isinstance(call, Mapping)
    ]
    info = getattr(generation, "generation_info", None) or {}
    metadata = getattr(message, "response_metadata", None) or {}
    finish = str(info.get("finish_reason") or metadata.get("finish_reason") or metadata.get("stop_reason") or "stop")
    meta = getattr(message, "usage_metadata", None) or {}
    if meta:
        usage["input"] = int(meta.get("input_tokens") or 0)
        usage["output"] = int(meta.get("output_tokens") or 0)
        details = meta.get("output_token_details") or {}
        usage["reasoning"] = int(details.get("reasoning") or 0)
    else:
        token_usage = (getattr(response, "llm_output", None) or {}).get("token_usage") or {}
        usage["input"] = int(token_usage.get("prompt_tokens") or 0)
        usage["output"] = int(token_usage.get("completion_tokens") or 0)
    return text, tool_calls, finish, usage


def _score(document: Any) -> float | None:
    metadata = getattr(document, "metadata", None) or {}
    for key in ("score", "relevance_score", "similarity"):
        value = metadata.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


__all__ = ["DunetraceCallbackHandler", "PolicyViolation"]
