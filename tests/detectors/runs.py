"""Build run events the way the receiver emits them, and replay them through the engine.

``RunBuilder`` mirrors ``receiver/assemble.py``: an LLM span gives ``llm.called`` (at its start)
and ``llm.responded`` (at its end) with the same ``call_id`` (the span id); tool and retrieval
spans likewise; the root span gives ``run.started`` and ``run.completed`` / ``run.errored``;
late content gives an ``llm.content`` amendment naming the LLM call. Payload keys are those of
spec §2 and of the receiver (``None`` values dropped, as the receiver does).

Step numbering used in the tests: ``run.started`` is step 0 and each ``.llm()``, ``.tool()``,
``.tool_called()`` and ``.retrieval()`` opens the next step, in call order.

``Replay`` feeds events one at a time to one ``DetectionEngine`` and one ``RunView`` and records
which event produced each signal, so a test can say "fired on this event, while the run was
still going".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from detectors import events as ev
from detectors.base import Signal
from detectors.engine import DetectionEngine
from detectors.events import RunEvent
from detectors.run_view import RunView
from detectors.settings import DetectorSettings

T0_NS = 1_700_000_000_000_000_000
GAP_NS = 1_000_000  # 1 ms between consecutive events
NOW_NS = T0_NS + 10**12  # the detection time handed to the engine


class _Auto:
    """Default marker: derive the value the way a real response would carry it."""

    def __repr__(self) -> str:
        return "AUTO"


AUTO = _Auto()


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def injection(*patterns: str, source: str = "input", input_length: int = 64) -> dict[str, Any]:
    """The receiver's injection payload (receiver.content.Injection.as_payload)."""
    return {
        "matched_patterns": list(patterns),
        "matched_pattern_count": len(patterns),
        "input_length": input_length,
        "source": source,
    }


def _drop_none(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if value is not None}


class RunBuilder:
    """A fluent builder of one run's events, in timestamp order."""

    def __init__(self, run_id: str = "run-1") -> None:
        self.run_id = run_id
        self.events: list[RunEvent] = []
        self.steps = 0
        self.last_call_id = ""
        self._now = T0_NS
        self._spans = 0
        self._root = f"{run_id}-root"
        self._tool_names: dict[str, str] = {}
        self._llm_end: dict[str, int] = {}
        self._last_llm: tuple[str, str | None, bool] | None = None  # call id, finish_reason, requested tools
        self._amendments = 0

    # --- internals --------------------------------------------------------------------

    def _span_id(self) -> str:
        self._spans += 1
        return f"span-{self._spans:04d}"

    def _emit(self, kind: str, ts_ns: int, call_id: str, payload: Mapping[str, Any], event_id: str = "") -> None:
        self.events.append(RunEvent(self.run_id, event_id or f"{call_id}:{kind}", kind, ts_ns, call_id, dict(payload)))

    def _tick(self) -> int:
        ts = self._now
        self._now += GAP_NS
        return ts

    def _span(self, latency_ms: float) -> tuple[int, int]:
        start = self._now
        end = start + int(latency_ms * 1_000_000)
        self._now = end + GAP_NS
        return start, end

    def _open_step(self, call_id: str) -> None:
        self.steps += 1
        self.last_call_id = call_id

    # --- the run ----------------------------------------------------------------------

    def start(
        self,
        tools: Sequence[str] = (),
        model: str = "gpt-4o",
        injection: Mapping[str, Any] | None = None,
        input_length: int = 64,
    ) -> RunBuilder:
        """``run.started``: the root span's start (tools: the union declared on LLM requests)."""
        payload = {
            "model": model,
            "tools": list(tools),
            "input_hash": sha(f"input of {self.run_id}"),
            "input_length": input_length,
            "injection": injection,
        }
        self._emit(ev.RUN_STARTED, self._tick(), self._root, _drop_none(payload))
        return self

    def end(self, final_answer: bool | None = None) -> RunBuilder:
        """``run.completed``; ``final_answer`` None infers it as the receiver does (the last LLM
        response ended with finish_reason stop and requested no tool)."""
        if final_answer is None:
            final_answer = self._last_llm is not None and self._last_llm[1] == "stop" and not self._last_llm[2]
        payload = {"exit_reason": "final_answer" if final_answer else "completed", "total_steps": self.steps}
        self._emit(ev.RUN_COMPLETED, self._tick(), self._root, payload)
        return self

    def errored(self, error_type: str = "RuntimeError") -> RunBuilder:
        payload = {"error_type": error_type, "error_hash": sha(error_type), "total_steps": self.steps}
        self._emit(ev.RUN_ERRORED, self._tick(), self._root, payload)
        return self

    # --- calls ------------------------------------------------------------------------

    def llm(
        self,
        finish: str | _Auto | None = AUTO,
        tools: Sequence[str] = (),
        prompt_tokens: int | None = 100,
        output_length: int | _Auto | None = AUTO,
        latency_ms: float = 800.0,
        injection: Mapping[str, Any] | None = None,
        error_type: str | None = None,
        call_id: str | None = None,
    ) -> RunBuilder:
        """One LLM span. ``tools``: the tool calls its response requested. By default a response
        requesting tools ends with ``tool_calls`` and no text, any other with ``stop`` and text."""
        call_id = call_id or self._span_id()
        self._open_step(call_id)
        finish_reason = ("tool_calls" if tools else "stop") if isinstance(finish, _Auto) else finish
        out_len = (0 if tools else 42) if isinstance(output_length, _Auto) else output_length
        start, end = self._span(latency_ms)
        called = {
            "model": "gpt-4o",
            "provider": "openai",
            "prompt_tokens": prompt_tokens,
            "prompt_hash": sha(f"prompt of {call_id}"),
            "prompt_length": 400,
            "call_id": call_id,
            "injection": injection,
        }
        requests = [
            {"call_id": f"call_{call_id}_{i}", "name": name, "args_hash": sha(f"{name} args"), "args_length": 16}
            for i, name in enumerate(tools)
        ]
        responded = {
            "finish_reason": finish_reason,
            "completion_tokens": 20,
            "output_length": out_len,
            "output_hash": sha(f"output of {call_id}") if out_len is not None else None,
            "tool_calls_requested": list(tools),
            "tool_requests": requests,
            "latency_ms": latency_ms,
            "error_type": error_type,
        }
        self._emit(ev.LLM_CALLED, start, call_id, _drop_none(called))
        self._emit(ev.LLM_RESPONDED, end, call_id, _drop_none(responded))
        self._llm_end[call_id] = end
        self._last_llm = (call_id, finish_reason, bool(tools))
        return self

    def content(
        self,
        call_id: str,
        finish: str | None = None,
        output_length: int | None = None,
        tools: Sequence[str] = (),
        injection: Mapping[str, Any] | None = None,
    ) -> RunBuilder:
        """An ``llm.content`` amendment: content of an earlier LLM call that arrived late (log
        records, or the richer of two spans of one call)."""
        self._amendments += 1
        payload: dict[str, Any] = {"source": "otlp_logs"}
        if injection is not None:
            payload.update(prompt_hash=sha(f"prompt of {call_id}"), prompt_length=400, injection=injection)
        if finish is not None or output_length is not None or tools:
            payload.update(
                output_hash=sha(f"output of {call_id}") if output_length is not None else None,
                output_length=output_length,
                finish_reason=finish,
                tool_calls_requested=list(tools),
            )
        ts = self._llm_end.get(call_id, self._now)
        event_id = f"{call_id}:{ev.LLM_CONTENT}:{self._amendments:04d}"
        self._emit(ev.LLM_CONTENT, ts, call_id, _drop_none(payload), event_id=event_id)
        if self._last_llm is not None and self._last_llm[0] == call_id:
            _, old_finish, old_tools = self._last_llm
            self._last_llm = (call_id, finish or old_finish, old_tools or bool(tools))
        return self

    def tool(
        self,
        name: str,
        args_hash: str | _Auto | None = AUTO,
        success: bool = True,
        error_type: str | None = None,
        latency_ms: float = 120.0,
        injection: Mapping[str, Any] | None = None,
    ) -> RunBuilder:
        """One tool span that has ended: ``tool.called`` then ``tool.responded``."""
        self.tool_called(name, args_hash=args_hash)
        return self.tool_responded(
            self.last_call_id, success=success, error_type=error_type, latency_ms=latency_ms, injection=injection
        )

    def tool_called(self, name: str, args_hash: str | _Auto | None = AUTO, call_id: str | None = None) -> RunBuilder:
        """Only the start of a tool call (its result is still awaited)."""
        call_id = call_id or self._span_id()
        self._open_step(call_id)
        self._tool_names[call_id] = name
        args = sha(f"{name} args") if isinstance(args_hash, _Auto) else args_hash
        payload = {"tool_name": name, "args_hash": args, "args_length": 16, "call_id": call_id}
        self._emit(ev.TOOL_CALLED, self._tick(), call_id, _drop_none(payload))
        return self

    def unnamed_tool_call(self) -> RunBuilder:
        """A tool call known only from a ``tool_calls`` finish reason (content not sent): no
        name, no arguments, as the receiver emits it."""
        call_id = "req:" + self._span_id() + ":?"
        self._open_step(call_id)
        payload = {"call_id": call_id, "source": "finish_reason"}
        self._emit(ev.TOOL_CALLED, self._tick(), call_id, payload)
        return self

    def name_tool_call(self, call_id: str, name: str, args_hash: str | _Auto = AUTO) -> RunBuilder:
        """A ``tool.content`` amendment: the late content names an unnamed tool call."""
        args = sha(f"{name} args") if isinstance(args_hash, _Auto) else args_hash
        ts = next(e.ts_ns for e in self.events if e.call_id == call_id and e.kind == ev.TOOL_CALLED)
        payload = {"tool_name": name, "args_hash": args, "args_length": 16}
        self._emit(ev.TOOL_CONTENT, ts, call_id, payload, event_id=f"{call_id}:{ev.TOOL_CONTENT}")
        return self

    def tool_responded(
        self,
        call_id: str,
        success: bool = True,
        error_type: str | None = None,
        latency_ms: float = 120.0,
        injection: Mapping[str, Any] | None = None,
    ) -> RunBuilder:
        """The result of a tool call opened earlier with ``tool_called``."""
        payload = {
            "tool_name": self._tool_names[call_id],
            "success": success,
            "error_type": error_type if not success else None,
            "error_hash": sha(error_type) if error_type and not success else None,
            "output_length": 0 if not success else 250,
            "output_hash": sha(f"result of {call_id}"),
            "latency_ms": latency_ms,
            "injection": injection,
        }
        self._emit(ev.TOOL_RESPONDED, self._tick(), call_id, _drop_none(payload))
        return self

    def retrieval(
        self,
        result_count: int | None = 3,
        top_score: float | None = 0.82,
        index_name: str | None = "kb",
        latency_ms: float = 40.0,
        injection: Mapping[str, Any] | None = None,
    ) -> RunBuilder:
        call_id = self._span_id()
        self._open_step(call_id)
        start, end = self._span(latency_ms)
        called = {"index_name": index_name, "query_hash": sha(f"query of {call_id}"), "call_id": call_id}
        responded = {
            "index_name": index_name,
            "result_count": result_count,
            "top_score": top_score,
            "latency_ms": latency_ms,
            "injection": injection,
        }
        self._emit(ev.RETRIEVAL_CALLED, start, call_id, _drop_none(called))
        self._emit(ev.RETRIEVAL_RESPONDED, end, call_id, _drop_none(responded))
        return self

    def build(self) -> list[RunEvent]:
        return list(self.events)


# --- replaying through the engine ---------------------------------------------------------

Baseline = Callable[[str], float | None]
SettingsLike = DetectorSettings | Mapping[str, Any] | None


def settings(raw: SettingsLike) -> DetectorSettings:
    if isinstance(raw, DetectorSettings):
        return raw
    return DetectorSettings.parse(raw)


@dataclass(frozen=True)
class Hit:
    """A signal and the event that produced it."""

    signal: Signal
    index: int  # position of that event among all events fed to the Replay (-1: close_stalled)
    event: RunEvent | None
    outcome: str | None  # the run's outcome when it fired; None while the run is still going


class Replay:
    """One engine, one run view; events are fed one at a time."""

    def __init__(
        self,
        config: SettingsLike = None,
        *,
        run_id: str = "run-1",
        agent_id: str = "agent",
        baseline: Baseline | None = None,
    ) -> None:
        self.engine = DetectionEngine(settings(config), baseline or (lambda _agent: None))
        self.view = RunView(run_id, agent_id)
        self.hits: list[Hit] = []
        self._fed = 0

    def feed(self, events: Iterable[RunEvent]) -> list[Signal]:
        produced: list[Signal] = []
        for event in events:
            signals = self.engine.process(self.view, [event], now_ns=NOW_NS)
            self.hits.extend(Hit(s, self._fed, event, self.view.outcome) for s in signals)
            produced.extend(signals)
            self._fed += 1
        return produced

    def stall(self) -> list[Signal]:
        """The run went quiet without its root span (engine.close_stalled)."""
        signals = self.engine.close_stalled(self.view, now_ns=NOW_NS)
        self.hits.extend(Hit(s, -1, None, self.view.outcome) for s in signals)
        return signals

    def reconfigure(self, config: SettingsLike) -> None:
        """Hot reload (pipeline.reconfigure): new thresholds apply from the next event on."""
        self.engine.settings = settings(config)

    @property
    def signals(self) -> list[Signal]:
        return [hit.signal for hit in self.hits]

    def of(self, failure_type: str) -> list[Signal]:
        return [s for s in self.signals if s.failure_type == failure_type]

    def hit(self, failure_type: str) -> Hit:
        """The one signal of this type (fails when there is none or more than one)."""
        hits = [h for h in self.hits if h.signal.failure_type == failure_type]
        assert len(hits) == 1, f"expected one {failure_type} signal, got {[h.signal for h in hits]}"
        return hits[0]


def replay(
    events: Iterable[RunEvent],
    config: SettingsLike = None,
    *,
    agent_id: str = "agent",
    baseline: Baseline | None = None,
) -> Replay:
    """Feed a whole run (its run id taken from its events) to a fresh engine and view."""
    events = list(events)
    run_id = events[0].run_id if events else "run-1"
    r = Replay(config, run_id=run_id, agent_id=agent_id, baseline=baseline)
    r.feed(events)
    return r


def index_of(events: Sequence[RunEvent], kind: str, call_id: str) -> int:
    """Position of the event of this kind and call in ``events``."""
    matches = [i for i, e in enumerate(events) if e.kind == kind and e.call_id == call_id]
    assert len(matches) == 1, (kind, call_id, matches)
    return matches[0]


def conf(expected: float) -> Any:
    """A confidence compared to its literal value (scale() rounds to 3 places)."""
    return pytest.approx(expected, abs=5e-4)


def loop(b: RunBuilder, name: str, **tool_kwargs: Any) -> str:
    """One turn of an agent loop: an LLM call requesting ``name``, then that tool call (two
    steps). Returns the tool call's id."""
    b.llm(tools=[name]).tool(name, **tool_kwargs)
    return b.last_call_id
