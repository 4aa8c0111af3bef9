"""The `detectors:` config section: per-detector thresholds with per-agent overrides.

    detectors:
      tool_loop: {threshold: 3, window: 5}       # defaults for every agent
      slow_step: {shadow: true}
      agents:
        research-agent:                          # merged over the defaults for this agent
          tool_loop: {threshold: 5}

Unknown detectors or fields, and values of the wrong type or range, are refused with the key
path named.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import library  # noqa: F401 - registers the detectors
from .base import REGISTRY, Detector, DetectorConfig

AGENTS_KEY = "agents"
BY_KEY: dict[str, Detector[Any]] = {d.key: d for d in REGISTRY.values()}


def _coerce(path: str, f: dataclasses.Field[Any], value: Any) -> Any:
    expected = f.type if isinstance(f.type, type) else {"bool": bool, "int": int, "float": float}.get(str(f.type))
    if expected is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{path}: expected true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path}: expected a number, got {value!r}")
    if expected is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{path}: expected a whole number, got {value!r}")
        return int(value)
    return float(value)


def _build(detector: Detector[Any], base: DetectorConfig, raw: Any, path: str) -> DetectorConfig:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: expected a mapping of settings")
    known = {f.name: f for f in dataclasses.fields(detector.config_type)}
    changes = {}
    for name, value in raw.items():
        if name not in known:
            raise ValueError(f"{path}.{name}: unknown setting (known: {', '.join(sorted(known))})")
        changes[name] = _coerce(f"{path}.{name}", known[name], value)
    config = dataclasses.replace(base, **changes)
    config.validate(path)
    return config


@dataclass(frozen=True)
class DetectorSettings:
    defaults: Mapping[str, DetectorConfig]  # failure type → config
    per_agent: Mapping[str, Mapping[str, DetectorConfig]] = field(default_factory=dict)

    def for_agent(self, agent_id: str) -> Mapping[str, DetectorConfig]:
        return self.per_agent.get(agent_id, self.defaults)

    @classmethod
    def default(cls) -> DetectorSettings:
        return cls({t: d.config_type() for t, d in REGISTRY.items()})

    @classmethod
    def parse(cls, raw: Any, path: str = "detectors") -> DetectorSettings:
        """Raises ValueError naming the key path."""
        if raw is None:
            return cls.default()
        if not isinstance(raw, Mapping):
            raise ValueError(f"{path}: expected a mapping of detectors")
        defaults = dict(cls.default().defaults)
        for key, value in raw.items():
            if key == AGENTS_KEY:
                continue
            detector = BY_KEY.get(key)
            if detector is None:
                raise ValueError(f"{path}.{key}: unknown detector (known: {', '.join(sorted(BY_KEY))})")
            defaults[detector.failure_type] = _build(detector, defaults[detector.failure_type], value, f"{path}.{key}")
        per_agent: dict[str, dict[str, DetectorConfig]] = {}
        agents = raw.get(AGENTS_KEY) or {}
        if not isinstance(agents, Mapping):
            raise ValueError(f"{path}.{AGENTS_KEY}: expected a mapping of agent id to detector settings")
        for agent_id, overrides in agents.items():
            agent_path = f"{path}.{AGENTS_KEY}.{agent_id}"
            if not isinstance(overrides, Mapping):
                raise ValueError(f"{agent_path}: expected a mapping of detectors")
            merged = dict(defaults)
            for key, value in overrides.items():
                detector = BY_KEY.get(key)
                if detector is None:
                    raise ValueError(f"{agent_path}.{key}: unknown detector (known: {', '.join(sorted(BY_KEY))})")
                merged[detector.failure_type] = _build(
                    detector, merged[detector.failure_type], value, f"{agent_path}.{key}"
                )
            per_agent[str(agent_id)] = merged
        return cls(defaults, per_agent)


def reference_markdown() -> str:
    """The README's detector table, generated from the detectors and their config dataclasses."""
    lines = ["| detector (`detectors.<key>`) | mode | fires when | settings (default) |", "|---|---|---|---|"]
    for failure_type in sorted(REGISTRY):
        detector = REGISTRY[failure_type]
        settings = [
            f"`{f.name}` ({str(f.default).lower() if isinstance(f.default, bool) else f.default}): {f.metadata['help']}"
            for f in dataclasses.fields(detector.config_type)
            if f.name not in ("enabled", "shadow")
        ]
        lines.append(
            f"| `{failure_type}` (`{detector.key}`) | {detector.mode} | {detector.summary} | "
            f"{'<br>'.join(settings) or '—'} |"
        )
    lines.append("")
    lines.append("Every detector also takes `enabled` (default true) and `shadow` (default false: store, never alert).")
    return "\n".join(lines)
