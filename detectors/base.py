"""The detector interface, its config base, findings and signals, and the registry.

A detector is stateless: it reads the run's incremental ``RunView`` (updated once per event by
the engine) and the event just applied, and returns a ``Finding`` when its condition holds.
Its thresholds are a frozen dataclass with defaults and help text (the README's detector
reference is generated from them).
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

if TYPE_CHECKING:
    from .events import RunEvent
    from .run_view import RunView

LIVE = "live"
END = "end"

CRITICAL = "CRITICAL"
HIGH = "HIGH"
MEDIUM = "MEDIUM"
LOW = "LOW"
SEVERITIES = (CRITICAL, HIGH, MEDIUM, LOW)  # most severe first

# Upper bound of any window or run-length threshold: the run view keeps this many recent
# tool calls, so per-run memory stays constant.
MAX_WINDOW = 64

_SIGNAL_NAMESPACE = uuid.UUID("4c0d9a31-2a55-4f8e-9f1b-5d8f0e6a7b21")


def scale(ratio: float) -> float:
    """Confidence from how far past its threshold an observation is (1.0 = just met)."""
    return round(min(max(0.5 + (ratio - 1.0) * 0.4, 0.0), 1.0), 3)


def signal_id_for(run_id: str, failure_type: str) -> str:
    """Stable: the same run and type always give the same id, so re-delivery never duplicates."""
    return str(uuid.uuid5(_SIGNAL_NAMESPACE, f"{run_id}:{failure_type}"))


def setting(default: Any, help: str, minimum: float | None = None) -> Any:
    """A threshold field: its default, its help text, and the smallest value accepted."""
    return field(default=default, metadata={"help": help, "minimum": minimum})


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    enabled: bool = setting(True, "Evaluate this detector.")
    shadow: bool = setting(False, "Store its signals but never alert on them.")

    def validate(self, path: str) -> None:
        """Raise ValueError naming ``path.<field>`` for a value out of range."""
        for f in fields(self):
            value = getattr(self, f.name)
            minimum = f.metadata.get("minimum")
            if minimum is not None and value < minimum:
                raise ValueError(f"{path}.{f.name}: must be at least {minimum}, got {value}")
            if f.name not in ("enabled", "shadow") and isinstance(value, int) and value > 10**9:
                raise ValueError(f"{path}.{f.name}: {value} is too large")


@dataclass(frozen=True, slots=True)
class Finding:
    severity: str
    confidence: float
    step_index: int
    evidence: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Signal:
    signal_id: str
    run_id: str
    agent_id: str
    failure_type: str
    severity: str
    confidence: float
    step_index: int
    evidence: Mapping[str, Any]
    detected_ns: int
    mode: str
    shadow: bool


C = TypeVar("C", bound=DetectorConfig)


class Detector(ABC, Generic[C]):
    """One failure type. Subclasses set the class attributes and implement ``check``."""

    failure_type: ClassVar[str]
    key: ClassVar[str]  # its section under `detectors:` in the config file
    mode: ClassVar[str]  # LIVE: after every triggering event; END: when the run ends
    triggers: ClassVar[frozenset[str]] = frozenset()  # event kinds a LIVE detector looks at
    config_type: ClassVar[type[DetectorConfig]]
    summary: ClassVar[str]  # one line for the README

    @abstractmethod
    def check(self, run: RunView, event: RunEvent, config: C) -> Finding | None:
        """Called on the event loop thread after ``run`` has applied ``event``; must not block."""


REGISTRY: dict[str, Detector[Any]] = {}


def register(cls: type[Detector[C]]) -> type[Detector[C]]:
    """Class decorator: one instance per failure type, keyed by type name."""
    if cls.failure_type in REGISTRY:
        raise ValueError(f"detector {cls.failure_type} registered twice")
    REGISTRY[cls.failure_type] = cls()
    return cls
