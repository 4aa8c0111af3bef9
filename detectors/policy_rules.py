"""What a policy is and when it matches: one set of rules for the daemon's API and the in-process SDK.

A policy compares one observed value of a run (tool calls, steps, cost, errors, the latest finish
reason or LLM latency, or a failure type that fired) with a value and names an action: ``stop``,
``switch_model`` (``params.model``), ``inject_prompt`` (``params.prompt``) or ``log``.
``parse_policy`` checks a policy as the API takes it (JSON) and names the first field that is
wrong, so the daemon and the SDK refuse the same policies with the same words.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .events import CALLED_KINDS, LLM_CALLED, LLM_RESPONDED, TOOL_CALLED, TOOL_RESPONDED, RunEvent
from .patterns import scan_injection
from .prices import Prices, cost_usd

TRIGGERS = ("tool_call_count", "step_count", "cost_usd", "error_count", "finish_reason", "llm_latency_ms", "signal")
NUMERIC_TRIGGERS = frozenset({"tool_call_count", "step_count", "cost_usd", "error_count", "llm_latency_ms"})
OPERATORS = ("gt", "gte", "lt", "lte", "eq", "neq", "contains")
NUMERIC_OPERATORS = frozenset({"gt", "gte", "lt", "lte", "eq", "neq"})
TEXT_OPERATORS = frozenset({"eq", "neq", "contains"})
ACTIONS = ("stop", "switch_model", "inject_prompt", "log")
DEFAULT_PRIORITY = 100
MAX_NAME = 256
PRIORITY_RANGE = (-(2**31), 2**31)

_TOP_FIELDS = ("id", "name", "agent_id", "condition", "action", "priority", "enabled")


class PolicyError(ValueError):
    """A policy that cannot be: ``str(error)`` is ``"<field>: <what is wrong>"``."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True, slots=True)
class Policy:
    """A checked policy. ``id``: the daemon's store gives ids from 1 up; the SDK numbers its
    local policies from -1 down, so the two never meet."""

    id: int
    name: str
    agent_id: str
    trigger: str
    operator: str
    value: Any
    action: str
    params: Mapping[str, Any]
    priority: int = DEFAULT_PRIORITY
    enabled: bool = True

    def as_dict(self) -> dict[str, Any]:
        """The API's JSON shape (what parse_policy takes back)."""
        return {
            "id": self.id,
            "name": self.name,
            "agent_id": self.agent_id,
            "condition": {"trigger": self.trigger, "operator": self.operator, "value": self.value},
            "action": {"type": self.action, "params": dict(self.params)},
            "priority": self.priority,
            "enabled": self.enabled,
        }


# --- checking a policy ------------------------------------------------------------------------


def _name(body: Mapping[str, Any], key: str, default: str | None) -> str:
    value = body.get(key, default)
    if value is None:
        raise PolicyError(key, "required")
    if not isinstance(value, str):
        raise PolicyError(key, f"expected a string, got {_kind(value)}")
    if not value.strip():
        raise PolicyError(key, "must not be empty or blank")
    if len(value) > MAX_NAME:
        raise PolicyError(key, f"at most {MAX_NAME} characters")
    return value.strip()


def _object(body: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    value = body.get(key)
    if value is None:
        raise PolicyError(key, "required")
    if not isinstance(value, Mapping):
        raise PolicyError(key, f"expected an object, got {_kind(value)}")
    for extra in value:
        if extra not in allowed:
            raise PolicyError(f"{key}.{extra}", f"unknown field; expected {', '.join(allowed)}")
    return value


def _choice(body: Mapping[str, Any], path: str, key: str, choices: tuple[str, ...]) -> str:
    value = body.get(key)
    if value is None:
        raise PolicyError(path, "required")
    if not isinstance(value, str) or value not in choices:
        raise PolicyError(path, f"expected one of {', '.join(choices)}, got {value!r}"[:300])
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _json_safe(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _json_safe(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_json_safe(v) for v in value)
    return value is None or isinstance(value, (str, int))


def parse_policy(body: Any, policy_id: int) -> Policy:
    """A policy as the API's JSON body writes it (its ``id`` is ignored: the caller gives
    ``policy_id``); raises PolicyError naming the first field that is wrong."""
    if not isinstance(body, Mapping):
        raise PolicyError("body", f"expected an object, got {_kind(body)}")
    for extra in body:
        if extra not in _TOP_FIELDS:
            raise PolicyError(str(extra)[:100], f"unknown field; expected {', '.join(_TOP_FIELDS[1:])}")
    name = _name(body, "name", None)
    agent_id = _name(body, "agent_id", "*")
    condition = _object(body, "condition", ("trigger", "operator", "value"))
    trigger = _choice(condition, "condition.trigger", "trigger", TRIGGERS)
    operator = _choice(condition, "condition.operator", "operator", OPERATORS)
    if "value" not in condition:
        raise PolicyError("condition.value", "required")
    value = condition["value"]
    allowed = NUMERIC_OPERATORS if trigger in NUMERIC_TRIGGERS else TEXT_OPERATORS
    if operator not in allowed:
        raise PolicyError(
            "condition.operator", f"{operator!r} does not apply to {trigger}; one of {', '.join(sorted(allowed))}"
        )
    if trigger in NUMERIC_TRIGGERS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PolicyError("condition.value", f"{trigger} takes a finite number, got {value!r}"[:300])
    elif not isinstance(value, str) or not value:
        raise PolicyError("condition.value", f"{trigger} takes a non-empty string, got {value!r}"[:300])
    action = _object(body, "action", ("type", "params"))
    action_type = _choice(action, "action.type", "type", ACTIONS)
    params = action.get("params") or {}
    if not isinstance(params, Mapping):
        raise PolicyError("action.params", f"expected an object, got {_kind(params)}")
    if not _json_safe(params):
        raise PolicyError("action.params", "only JSON values (numbers must be finite: NaN and Infinity are not JSON)")
    if action_type == "switch_model":
        model = params.get("model")
        if not isinstance(model, str) or not model.strip():
            raise PolicyError("action.params.model", "switch_model needs the model to switch to")
    if action_type == "inject_prompt":
        prompt = params.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise PolicyError("action.params.prompt", "inject_prompt needs the prompt to inject")
        found = scan_injection(prompt)
        if found is not None:
            raise PolicyError(
                "action.params.prompt", f"matches injection patterns ({', '.join(found.matched_patterns)})"
            )
    priority = body.get("priority", DEFAULT_PRIORITY)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise PolicyError("priority", f"expected a whole number, got {_kind(priority)}")
    if not PRIORITY_RANGE[0] <= priority <= PRIORITY_RANGE[1]:
        raise PolicyError("priority", f"between {PRIORITY_RANGE[0]} and {PRIORITY_RANGE[1]}")
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise PolicyError("enabled", f"expected true or false, got {_kind(enabled)}")
    return Policy(
        id=policy_id,
        name=name,
        agent_id=agent_id,
        trigger=trigger,
        operator=operator,
        value=value,
        action=action_type,
        params=dict(params),
        priority=priority,
        enabled=enabled,
    )


# --- matching ---------------------------------------------------------------------------------


def matches(operator: str, observed: Any, value: Any, trigger: str) -> bool:
    if observed is None:
        return False
    if trigger == "signal":  # "eq" and "contains" both mean: this failure type has fired in the run
        fired = value in observed
        return not fired if operator == "neq" else fired
    if operator == "contains":
        return str(value).lower() in str(observed).lower()
    if operator == "eq":
        return bool(observed == value)
    if operator == "neq":
        return bool(observed != value)
    if not isinstance(observed, (int, float)):
        return False
    return {
        "gt": observed > value,
        "gte": observed >= value,
        "lt": observed < value,
        "lte": observed <= value,
    }[operator]


@dataclass(slots=True)
class PolicyRunState:
    """What policies observe of one run, kept alongside its detectors' view.

    One per open run (the sidecar holds thousands): its sets and map exist only once something
    is put in them; reading ``fired_types``, ``fired_policies`` or ``pending_models`` makes them."""

    tool_calls: int = 0
    steps: int = 0
    errors: int = 0
    cost_usd: float = 0.0
    _fired_types: set[str] | None = field(default=None, repr=False)
    _fired_policies: set[int] | None = field(default=None, repr=False)
    # LLM calls not answered yet: call id → (model, prompt tokens)
    _pending_models: dict[str, tuple[str | None, int]] | None = field(default=None, repr=False)

    @property
    def fired_types(self) -> set[str]:
        if self._fired_types is None:
            self._fired_types = set()
        return self._fired_types

    @property
    def fired_policies(self) -> set[int]:
        if self._fired_policies is None:
            self._fired_policies = set()
        return self._fired_policies

    @property
    def pending_models(self) -> dict[str, tuple[str | None, int]]:
        if self._pending_models is None:
            self._pending_models = {}
        return self._pending_models

    def observe(self, event: RunEvent, prices: Prices) -> dict[str, Any]:
        """Fold the event in; the values this event changed (a log policy fires once per change)."""
        p = event.payload
        observed: dict[str, Any] = {}
        if event.kind in CALLED_KINDS:
            self.steps += 1
            observed["step_count"] = self.steps
        if event.kind == LLM_CALLED:
            pending = self.pending_models
            pending[event.call_id] = (p.get("model"), int(p.get("prompt_tokens") or 0))
            if len(pending) > 64:
                pending.pop(next(iter(pending)))
        elif event.kind == TOOL_CALLED:
            self.tool_calls += 1
            observed["tool_call_count"] = self.tool_calls
        elif event.kind == TOOL_RESPONDED:
            if p.get("success") is False:
                self.errors += 1
                observed["error_count"] = self.errors
        elif event.kind == LLM_RESPONDED:
            model, prompt_tokens = (None, 0)
            if self._pending_models is not None:
                model, prompt_tokens = self._pending_models.pop(event.call_id, (None, 0))
                if not self._pending_models:
                    self._pending_models = None  # an emptied dict keeps its table: drop it
            self.cost_usd += cost_usd(model, prompt_tokens, int(p.get("completion_tokens") or 0), prices)
            observed["cost_usd"] = round(self.cost_usd, 6)
            observed["finish_reason"] = p.get("finish_reason")
            observed["llm_latency_ms"] = p.get("latency_ms")
            if p.get("error_type"):
                self.errors += 1
                observed["error_count"] = self.errors
        return observed


def due(policies: Iterable[Policy], state: PolicyRunState, observed: Mapping[str, Any]) -> Iterator[tuple[Policy, Any]]:
    """The policies (in the order given: priority first) that fire on these observed values, each
    with the value it saw; a policy fires once per run, except ``log``, which fires every time."""
    for policy in policies:
        if policy.trigger not in observed:
            continue
        if policy.action != "log" and policy.id in state.fired_policies:
            continue
        value = observed[policy.trigger]
        if not matches(policy.operator, value, policy.value, policy.trigger):
            continue
        state.fired_policies.add(policy.id)
        yield policy, sorted(value) if isinstance(value, frozenset) else value


def observe(state: PolicyRunState, event: RunEvent, new_signal_types: Iterable[str], prices: Prices) -> dict[str, Any]:
    """The values one event (and the failure types it made fire) changed, ``signal`` included."""
    observed = state.observe(event, prices)
    fired = list(new_signal_types)
    if fired:
        state.fired_types.update(fired)
        observed["signal"] = frozenset(state.fired_types)
    return observed
