"""One agent run: the root span of its trace, its steps as child spans (docs/sdk-spans.md), and
the run events the detectors and policies read, built in the agent's process from reduced
content only.

A step's span is created when the step ends (``*_responded``) with the time it started, so a
span is never left open by a caller that forgets to answer; steps still open when the run ends
are ended with it. Every method is safe to call from several threads of the same run.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import _content as content
from . import _ndjson
from ._detectors import events as ev
from ._detectors.events import RunEvent
from ._detectors.policy_rules import Policy, PolicyRunState, due, observe
from ._engine import RunView
from .policies import PolicyViolation

if TYPE_CHECKING:
    from .client import Dunetrace

logger = logging.getLogger("dunetrace")

EVALUATED_KINDS = frozenset({ev.TOOL_CALLED, ev.LLM_RESPONDED, ev.TOOL_RESPONDED})  # the docs' three
MAX_BACKLOG = 256  # events kept for policies that may arrive later (the sidecar's first answer)
OTHER_ERROR = "_OTHER"  # semconv error.type when the error has no class name


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != []}


def _error_type(error: Any) -> str:
    return type(error).__name__ if isinstance(error, BaseException) else OTHER_ERROR


@dataclass(slots=True)
class _Call:
    """A step that was called and has not answered yet."""

    kind: str  # llm | tool | retrieval
    call_id: str
    name: str  # model, tool name, index name
    start_ns: int
    step: int
    attributes: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: int = 0
    done: bool = False


class RunContext:
    """What ``dt.run()`` yields. Report each step of the agent through it; read
    ``model_override`` and ``prompt_additions`` (``pop_prompt_addition()``) between steps to
    follow what policies decided."""

    def __init__(
        self,
        client: Dunetrace,
        agent_id: str,
        *,
        agent_version: str = "",
        tools: list[str] | None = None,
        user_input: str = "",
        model: str = "unknown",
        parent_run_id: str | None = None,
        trace_id: str | None = None,
        conversation_id: str | None = None,
        run_id: str | None = None,
    ) -> None:
        self._client = client
        # The run id (a UUID; the trace id): new unless given (the LangChain handler's root run id).
        self.run_id = str(uuid.UUID(str(run_id))) if run_id else str(uuid.uuid4())
        self.agent_id = agent_id
        self.agent_version = agent_version
        self.parent_run_id = parent_run_id
        self.trace_id = trace_id  # an external evaluation system's trace id (Langfuse), as given
        self.conversation_id = conversation_id
        self.step = 0
        self.exit_reason: str | None = None
        self.model_override: str | None = None
        self.prompt_additions: list[str] = []
        self.signals: list[Any] = []  # failure signals the in-process detectors raised (for signal policies)
        self.otel_trace_id = uuid.UUID(self.run_id).hex
        self._lock = threading.RLock()
        self._llm_calls: list[_Call] = []
        self._open: list[_Call] = []
        self._seq = 0
        self._last_end_ns = 0
        self._ended = False
        self._violation: PolicyViolation | None = None
        # The sidecar's live decisions (dunetrace._decisions): the ones applied, a stop to raise
        # at the next step, and the signals it raised on this run.
        self._decided: set[str] = set()
        self._sidecar_stop: PolicyViolation | None = None
        # A stop a policy decided on a step the agent did not report itself (auto-instrumentation:
        # the call had already returned), raised when the agent starts its next step.
        self._next_step_stop: PolicyViolation | None = None
        self.sidecar_signals: list[dict[str, Any]] = []
        self._policy_state = PolicyRunState()
        self._view = RunView(self.run_id, agent_id)
        self._backlog: list[RunEvent] = []

        started_ns = time.time_ns()
        attributes = _drop_none(
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": agent_id,
                "dunetrace.agent.version": agent_version or None,
            }
        )
        client._ids.next_trace_id(uuid.UUID(self.run_id).int)
        self._root = client._tracer.start_span(
            f"invoke_agent {agent_id}",
            context=trace.set_span_in_context(trace.INVALID_SPAN),  # a root, whatever span is active
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=started_ns,
        )
        self._root_context = trace.set_span_in_context(self._root)  # auto-instrumented spans' parent
        self._root_span_context = self._root.get_span_context()
        self.otel_span_id = format(self._root_span_context.span_id, "016x")
        injection = content.reduce(content.text_of(user_input), content.INPUT) if user_input else None
        self._record(
            ev.RUN_STARTED,
            started_ns,
            "run",
            _drop_none(
                {
                    "model": model if model and model != "unknown" else None,
                    "tools": list(tools or []),
                    "input_hash": injection.hash if injection else None,
                    "input_length": injection.length if injection else None,
                    "injection": injection.injection_payload() if injection else None,
                }
            ),
            0,
        )

    # --- LLM calls ------------------------------------------------------------------------------

    def llm_called(
        self,
        model: str,
        prompt_tokens: int = 0,
        provider: str | None = None,
        prompt_tokens_estimated: bool = False,
        *,
        prompt: Any = None,
    ) -> None:
        """An LLM call starts. ``prompt`` (text or messages) is hashed and scanned here, never sent."""
        self._raise_if_stopped()
        now = time.time_ns()
        reduced = content.reduce_prompt(prompt) if prompt is not None else None
        with self._lock:
            call = self._open_call("llm", str(model or "unknown"), now)
            call.prompt_tokens = int(prompt_tokens or 0)
            call.attributes = _drop_none(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": call.name,
                    "gen_ai.provider.name": provider or None,
                    "dunetrace.prompt.hash": reduced.hash if reduced else None,
                    "dunetrace.prompt.length": reduced.length if reduced else None,
                    **(reduced.injection_attributes() if reduced else {}),
                }
            )
            self._llm_calls.append(call)
            payload = _drop_none(
                {
                    "model": call.name,
                    "provider": provider or None,
                    "prompt_tokens": call.prompt_tokens or None,
                    "prompt_hash": reduced.hash if reduced else None,
                    "prompt_length": reduced.length if reduced else None,
                    "call_id": call.call_id,
                    "injection": reduced.injection_payload() if reduced else None,
                }
            )
            self._record(ev.LLM_CALLED, now, call.call_id, payload, call.step)

    def llm_responded(
        self,
        completion_tokens: int = 0,
        reasoning_tokens: int = 0,
        latency_ms: int = 0,
        finish_reason: str | None = "stop",
        output: Any = None,
        output_length: int | None = None,
        prompt_tokens: int = 0,
        error: Any = None,
        call_index: int | None = None,
        instrumentation_degraded: str | None = None,
        *,
        tool_calls: Any = None,
    ) -> None:
        """The LLM call answered (by default the latest one still open; ``call_index`` names
        another). ``output`` is hashed here; ``tool_calls`` are the tools the completion asked
        for (``{"name", "id", "arguments"}`` or OpenAI's ``{"id", "function": {...}}``)."""
        now = time.time_ns()
        reduced = content.reduce(content.text_of(output)) if output is not None else None
        requests = content.tool_requests(tool_calls)
        with self._lock:
            call = self._llm_call(call_index, now, latency_ms)
            call.done = True
            if prompt_tokens:
                call.prompt_tokens = int(prompt_tokens)
                self._policy_state.pending_models[call.call_id] = (call.name, call.prompt_tokens)
            end_ns = self._end_of(call, now, latency_ms)
            finish = content.normalise_finish_reason(finish_reason)
            if requests and finish == "stop":
                finish = "tool_calls"
            length = reduced.length if reduced else output_length
            attributes = dict(call.attributes)
            attributes.update(
                _drop_none(
                    {
                        "gen_ai.usage.input_tokens": call.prompt_tokens or None,
                        "gen_ai.usage.output_tokens": int(completion_tokens) if completion_tokens else None,
                        "gen_ai.response.finish_reasons": [finish_reason] if finish_reason else None,
                        "dunetrace.output.hash": reduced.hash if reduced else None,
                        "dunetrace.output.length": length,
                        "dunetrace.tool_requests.names": [r.name for r in requests],
                        "dunetrace.tool_requests.ids": [r.call_id for r in requests],
                        "dunetrace.tool_requests.args_hashes": [r.args_hash for r in requests],
                    }
                )
            )
            error_type = _error_type(error) if error else None
            self._emit_span(f"chat {call.name}", SpanKind.CLIENT, call.start_ns, end_ns, attributes, error_type)
            payload = _drop_none(
                {
                    "finish_reason": finish,
                    "completion_tokens": int(completion_tokens) if completion_tokens else None,
                    "reasoning_tokens": int(reasoning_tokens) if reasoning_tokens else None,
                    "output_length": length,
                    "output_hash": reduced.hash if reduced else None,
                    "tool_calls_requested": [r.name for r in requests],
                    "tool_requests": [
                        _drop_none(
                            {
                                "call_id": r.call_id or None,
                                "name": r.name,
                                "args_hash": r.args_hash,
                                "args_length": r.args_length,
                            }
                        )
                        for r in requests
                    ],
                    "latency_ms": (end_ns - call.start_ns) // 1_000_000,
                    "error_type": error_type,
                    "instrumentation_degraded": instrumentation_degraded,
                }
            )
            violation = self._record(ev.LLM_RESPONDED, end_ns, call.call_id, payload, call.step)
        if violation is not None:
            raise violation

    # --- tool calls -----------------------------------------------------------------------------

    def tool_called(
        self,
        tool_name: str,
        args: Any = None,
        *,
        tool_call_id: str | None = None,
        _enforce_approval: bool = True,
    ) -> None:
        """A tool call starts; ``args`` (as the agent passes them) are hashed here."""
        self._raise_if_stopped()
        now = time.time_ns()
        arguments = content.canonical_arguments(args)
        reduced = content.reduce(arguments) if args is not None else None
        with self._lock:
            violation = self._tool_called(str(tool_name), reduced, tool_call_id, now)
        if violation is not None:
            raise violation

    def _tool_called(
        self, tool_name: str, reduced: content.Reduced | None, tool_call_id: str | None, now: int
    ) -> PolicyViolation | None:
        call = self._open_call("tool", tool_name, now)
        call.attributes = _drop_none(
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": tool_name,
                "gen_ai.tool.call.id": tool_call_id or None,
                "dunetrace.tool.args.hash": reduced.hash if reduced else None,
                "dunetrace.tool.args.length": reduced.length if reduced else None,
            }
        )
        payload = _drop_none(
            {
                "tool_name": tool_name,
                "args_hash": reduced.hash if reduced else None,
                "args_length": reduced.length if reduced else None,
                "call_id": call.call_id,
                "tool_call_id": tool_call_id or None,
            }
        )
        return self._record(ev.TOOL_CALLED, now, call.call_id, payload, call.step)

    def tool_responded(
        self,
        tool_name: str,
        success: bool = True,
        output_length: int | None = None,
        latency_ms: int = 0,
        error: Any = None,
        output: Any = "",
    ) -> None:
        """The tool call answered (the latest open call of that tool). ``output`` is hashed and
        scanned for injection here; ``success=False`` (or an ``error``) marks it failed."""
        now = time.time_ns()
        text = content.text_of(output)
        reduced = content.reduce(text, content.TOOL_RESULT) if text else None
        failed = not success
        violation: PolicyViolation | None = None
        with self._lock:
            call = self._find_open("tool", str(tool_name))
            if call is None:  # answered without being announced: it was called all the same
                start = now - max(0, int(latency_ms or 0)) * 1_000_000
                violation = self._tool_called(str(tool_name), None, None, start)
                call = self._find_open("tool", str(tool_name))
                assert call is not None
            call.done = True
            end_ns = self._end_of(call, now, latency_ms)
            length = output_length if output_length is not None else (reduced.length if reduced else 0)
            error_type = (_error_type(error) if error else OTHER_ERROR) if failed else None
            error_hash = content.sha256_text(content.text_of(error)) if failed and error else None
            attributes = dict(call.attributes)
            attributes.update(
                _drop_none(
                    {
                        "dunetrace.tool.result.hash": reduced.hash if reduced else None,
                        "dunetrace.tool.result.length": length,
                        **(reduced.injection_attributes() if reduced else {}),
                    }
                )
            )
            self._emit_span(
                f"execute_tool {call.name}", SpanKind.INTERNAL, call.start_ns, end_ns, attributes, error_type
            )
            payload = _drop_none(
                {
                    "tool_name": call.name,
                    "success": not failed,
                    "error_type": error_type,
                    "error_hash": error_hash,
                    "output_length": length,
                    "output_hash": reduced.hash if reduced else None,
                    "latency_ms": (end_ns - call.start_ns) // 1_000_000,
                    "injection": reduced.injection_payload() if reduced else None,
                }
            )
            if violation is None:
                violation = self._record(ev.TOOL_RESPONDED, end_ns, call.call_id, payload, call.step)
            else:
                self._record(ev.TOOL_RESPONDED, end_ns, call.call_id, payload, call.step, evaluate=False)
        if violation is not None:
            raise violation

    # --- retrievals -----------------------------------------------------------------------------

    def retrieval_called(self, index_name: str, query: Any = "") -> None:
        """A retrieval starts; ``query`` is hashed here."""
        self._raise_if_stopped()
        now = time.time_ns()
        reduced = content.reduce(content.text_of(query))
        with self._lock:
            call = self._open_call("retrieval", str(index_name), now)
            call.attributes = {
                "gen_ai.operation.name": "retrieval",
                "gen_ai.data_source.id": call.name,
                "dunetrace.retrieval.query.hash": reduced.hash,
                "dunetrace.retrieval.query.length": reduced.length,
            }
            payload = {
                "index_name": call.name,
                "query_hash": reduced.hash,
                "query_length": reduced.length,
                "call_id": call.call_id,
            }
            self._record(ev.RETRIEVAL_CALLED, now, call.call_id, payload, call.step)

    def retrieval_responded(
        self,
        index_name: str,
        result_count: int,
        top_score: float | None = None,
        latency_ms: int = 0,
        content: Any = "",
    ) -> None:
        """The retrieval answered; the documents' ``content`` is only scanned for injection."""
        now = time.time_ns()
        text = _text(content)
        found = _reduce(text, "retrieval") if text else None
        with self._lock:
            call = self._find_open("retrieval", str(index_name))
            if call is None:
                start = now - max(0, int(latency_ms or 0)) * 1_000_000
                self.retrieval_called(str(index_name))
                call = self._find_open("retrieval", str(index_name))
                assert call is not None
                call.start_ns = min(call.start_ns, start)
            call.done = True
            end_ns = self._end_of(call, now, latency_ms)
            attributes = dict(call.attributes)
            attributes["dunetrace.retrieval.result_count"] = int(result_count)
            if top_score is not None:
                attributes["dunetrace.retrieval.top_score"] = float(top_score)
            if found is not None:
                attributes.update(found.injection_attributes())
            self._emit_span(f"retrieval {call.name}", SpanKind.CLIENT, call.start_ns, end_ns, attributes, None)
            payload = _drop_none(
                {
                    "index_name": call.name,
                    "result_count": int(result_count),
                    "top_score": float(top_score) if top_score is not None else None,
                    "latency_ms": (end_ns - call.start_ns) // 1_000_000,
                    "injection": found.injection_payload() if found else None,
                }
            )
            self._record(ev.RETRIEVAL_RESPONDED, end_ns, call.call_id, payload, call.step)

    # --- the run's outcome and the policies' decisions -----------------------------------------

    def final_answer(self) -> None:
        """The agent produced its final answer: the run ends with exit_reason ``final_answer``."""
        self.exit_reason = "final_answer"

    def pop_prompt_addition(self) -> str | None:
        """The oldest prompt an ``inject_prompt`` policy added and nobody used yet, or None."""
        with self._lock:
            return self.prompt_additions.pop(0) if self.prompt_additions else None

    # --- internals ------------------------------------------------------------------------------

    def _open_call(self, kind: str, name: str, now: int) -> _Call:
        self._seq += 1
        self.step += 1
        call = _Call(kind, f"{kind}-{self._seq}", name, now, self.step)
        self._open.append(call)
        return call

    def _find_open(self, kind: str, name: str) -> _Call | None:
        for call in reversed(self._open):
            if call.kind == kind and call.name == name and not call.done:
                return call
        return None

    def _llm_call(self, call_index: int | None, now: int, latency_ms: int) -> _Call:
        if call_index is not None and 0 <= call_index < len(self._llm_calls):
            return self._llm_calls[call_index]
        for call in reversed(self._llm_calls):
            if not call.done:
                return call
        # answered without being announced: the call happened all the same
        self.llm_called("unknown")
        call = self._llm_calls[-1]
        call.start_ns = min(call.start_ns, now - max(0, int(latency_ms or 0)) * 1_000_000)
        return call

    def _end_of(self, call: _Call, now: int, latency_ms: int) -> int:
        """When the step ended: now, or later when the caller reports a longer latency."""
        if call in self._open:
            self._open.remove(call)
        end = max(now, call.start_ns + max(0, int(latency_ms or 0)) * 1_000_000)
        self._last_end_ns = max(self._last_end_ns, end)
        return end

    def _emit_span(
        self,
        name: str,
        kind: SpanKind,
        start_ns: int,
        end_ns: int,
        attributes: dict[str, Any],
        error_type: str | None,
    ) -> None:
        if self._ended:
            return
        # Every step names its agent: the root arrives last, and the sidecar must know whose run
        # it is (its policies, its live decisions) while the run is still going.
        attributes = {**attributes, "gen_ai.agent.name": self.agent_id}
        if error_type:
            attributes["error.type"] = error_type
        self._client._steps.write(name, self._root_span_context, kind, start_ns, end_ns, attributes, bool(error_type))

    def _record(
        self, kind: str, ts_ns: int, call_id: str, payload: dict[str, Any], step: int, evaluate: bool = True
    ) -> PolicyViolation | None:
        """One run event: its NDJSON line, and the policies it may trigger (the violation a
        ``stop`` raises is returned, to be raised outside the lock)."""
        if self._client._emit_json:
            _ndjson.write_line(ts_ns, kind, self.agent_id, self.run_id, step, payload)
        if self._ended:
            return None
        self._backlog.append(RunEvent(self.run_id, f"{call_id}:{kind}", kind, ts_ns, call_id, payload))
        if kind in EVALUATED_KINDS and evaluate:
            return self._evaluate(ts_ns, step)
        if len(self._backlog) >= MAX_BACKLOG:
            # the OTel exporter writes every signal of the run on its root: the detectors see every event
            self._fold(self._client._otel_exporter is not None)
        return None

    def _fold(self, detect: bool, only: frozenset[str] | None = None) -> dict[str, Any]:
        """Fold the events not yet seen into the detectors' view and the policies' state; the
        values they changed (``signal``: the failure types fired so far, when one just fired).
        ``detect``: ask the live detectors too (``only`` those of these failure types)."""
        observed: dict[str, Any] = {}
        backlog = self._backlog
        if not backlog:
            return observed
        new_types: list[str] = []
        if detect:  # the detectors over the whole backlog at once, as the sidecar does per request
            engine = self._client._engine
            found = engine.process(self._view, backlog, now_ns=backlog[-1].ts_ns, end=False, failure_types=only)
            self.signals.extend(found)
            new_types = [s.failure_type for s in found]
        else:
            for event in backlog:
                self._view.apply(event)
        prices = self._client._prices
        last = len(backlog) - 1
        for index, event in enumerate(backlog):
            # the types that fired are seen with the last event: the policies are asked once, after it
            observed.update(observe(self._policy_state, event, new_types if index == last else (), prices))
        backlog.clear()
        return observed

    def _evaluate(self, ts_ns: int, step: int) -> PolicyViolation | None:
        policies = self._client._policy_book.for_agent(self.agent_id)
        if not policies:
            return None  # the events wait in the backlog for policies that may come
        named = frozenset(str(p.value) for p in policies if p.trigger == "signal")
        # Only the detectors a signal policy names (the sidecar runs them all on the same events);
        # all of them for the OTel exporter, which writes every signal on the run's root.
        only = named if self._client._otel_exporter is None else None
        observed = self._fold(bool(named), only)
        for policy, seen in list(due(policies, self._policy_state, observed)):
            violation = self._fire(policy, seen, ts_ns, step)
            if violation is not None:
                return violation
        return None

    def _fire(self, policy: Policy, seen: Any, ts_ns: int, step: int) -> PolicyViolation | None:
        import json

        self._root.add_event(
            "dunetrace.policy.triggered",
            attributes={
                "dunetrace.policy.id": policy.id,
                "dunetrace.policy.name": policy.name,
                "dunetrace.policy.trigger": policy.trigger,
                "dunetrace.policy.operator": policy.operator,
                "dunetrace.policy.value": json.dumps(policy.value),
                "dunetrace.policy.observed": json.dumps(seen, default=str),
                "dunetrace.policy.action": policy.action,
            },
            timestamp=ts_ns,
        )
        if self._client._emit_json:
            payload = {
                "policy_id": policy.id,
                "policy_name": policy.name,
                "action_type": policy.action,
                "trigger": policy.trigger,
                "operator": policy.operator,
                "value": policy.value,
                "observed": seen,
                "source": "sdk",
            }
            _ndjson.write_line(ts_ns, ev.POLICY_TRIGGERED, self.agent_id, self.run_id, step, payload)
        if policy.action == "stop":
            message = str(policy.params.get("message") or f"Policy '{policy.name}' stopped the run")
            self._violation = PolicyViolation(policy.name, {"type": "stop", "params": dict(policy.params)}, message)
            self._violation.policy_id = policy.id
            return self._violation
        if policy.action == "switch_model":
            self.model_override = str(policy.params["model"])
            logger.info("Dunetrace policy '%s': model_override -> %s", policy.name, self.model_override)
        elif policy.action == "inject_prompt":
            self.prompt_additions.append(str(policy.params["prompt"]))
            logger.info("Dunetrace policy '%s': prompt added", policy.name)
        else:
            logger.info("Dunetrace policy '%s' matched: %s=%s", policy.name, policy.trigger, seen)
        return None

    # --- the sidecar's live decisions ------------------------------------------------------------

    def _raise_if_stopped(self) -> None:
        """A ``stop`` the sidecar decided (or a policy decided on a step that had already
        returned) is raised when the agent starts its next step."""
        if self._ended:
            return
        stop = self._sidecar_stop or self._next_step_stop
        if stop is not None:
            self._sidecar_stop = None
            self._next_step_stop = None
            raise stop

    def _stop_at_next_step(self, violation: PolicyViolation) -> None:
        """Keep a ``stop`` decided on a step that already returned, for the agent's next step."""
        with self._lock:
            if self._next_step_stop is None and not self._ended:
                self._next_step_stop = violation

    def _apply_decision(self, decision: Any) -> None:
        """One decision from the sidecar (a ``dunetrace.sidecar.v1.Decision``; the watcher's
        thread), applied once. A policy this process already fired (the sidecar's policies are
        evaluated here too) is not applied again, and marks it fired so it is not fired here later."""
        with self._lock:
            if self._ended or decision.decision_id in self._decided:
                return
            self._decided.add(decision.decision_id)
            if decision.WhichOneof("kind") == "signal":
                raised = decision.signal
                self.sidecar_signals.append(
                    {
                        "signal_id": raised.signal_id,
                        "failure_type": raised.failure_type,
                        "severity": raised.severity,
                        "confidence": raised.confidence,
                        "step_index": raised.step_index,
                    }
                )
                return
            policy = decision.policy
            if policy.action != "log" and policy.policy_id in self._policy_state.fired_policies:
                return
            self._policy_state.fired_policies.add(policy.policy_id)
            if policy.action == "stop":
                self._sidecar_stop = PolicyViolation(
                    policy.policy_name,
                    {"type": "stop", "params": {}},
                    f"The sidecar's policy '{policy.policy_name}' stopped the run",
                    policy_id=policy.policy_id,
                )
            elif policy.action == "switch_model" and policy.model:
                self.model_override = policy.model
            elif policy.action == "inject_prompt" and policy.prompt:
                self.prompt_additions.append(policy.prompt)
            logger.info("Dunetrace: the sidecar's policy '%s' decided %s", policy.policy_name, policy.action)

    def _end(self, error: BaseException | None) -> None:
        """Close the run: its open steps, its root span, its terminal event."""
        decisions = self._client._decisions
        if decisions is not None:
            decisions.unwatch(self.run_id)
        with self._lock:
            if self._ended:
                return
            now = max(time.time_ns(), self._last_end_ns)
            for call in list(self._open):  # steps the caller never answered end with the run
                names = {"llm": f"chat {call.name}", "tool": f"execute_tool {call.name}"}
                name = names.get(call.kind, f"retrieval {call.name}")
                span_kind = SpanKind.INTERNAL if call.kind == "tool" else SpanKind.CLIENT
                self._emit_span(name, span_kind, call.start_ns, now, call.attributes, None)
            self._open.clear()
            if _stopped_by_policy(error):
                self.exit_reason = "policy_violation"
            elif error is not None:
                self.exit_reason = "error"
            if self.exit_reason:
                self._root.set_attribute("dunetrace.exit_reason", self.exit_reason)
            if error is not None:
                self._root.set_attribute("error.type", type(error).__name__)
                self._root.set_status(Status(StatusCode.ERROR))
                payload: dict[str, Any] = {"error_type": type(error).__name__, "total_steps": self.step}
                if self.exit_reason == "policy_violation":
                    payload["exit_reason"] = "policy_violation"
                self._record(ev.RUN_ERRORED, now, "run", payload, self.step, evaluate=False)
            else:
                payload = {"exit_reason": self.exit_reason or "completed", "total_steps": self.step}
                self._record(ev.RUN_COMPLETED, now, "run", payload, self.step, evaluate=False)
            exporter = self._client._otel_exporter
            if exporter is not None:  # dunetrace.integrations.otel: the run's signals, for its root's copy
                exporter._run_ending(self)
            self._ended = True
            self._backlog.clear()
            self._root.end(end_time=now)


def _stopped_by_policy(error: BaseException | None) -> bool:
    """The error is a PolicyViolation, or was raised from one (a client library that wraps what
    its transport raised: openai's ``APIConnectionError`` from a stop at the HTTP layer)."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, PolicyViolation):
            return True
        error = error.__cause__
        seen += 1
    return False


def _text(value: Any) -> str:
    return content.text_of(value)


def _reduce(text: str, source: str) -> content.Reduced:
    return content.reduce(text, source)
