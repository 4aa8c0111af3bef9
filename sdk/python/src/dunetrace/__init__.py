"""Dunetrace's in-process SDK: agent runs as OpenTelemetry traces, content hashed in the
process, and policies that act on the run (see docs/sdk-spans.md for the spans it sends)."""

from ._detectors.policy_rules import PolicyError
from .client import Dunetrace, DunetraceClient, __version__
from .context import get_current_run
from .middleware import DunetraceASGIMiddleware, DunetraceWSGIMiddleware
from .policies import PolicyConfigError, PolicyViolation
from .run_context import RunContext

__all__ = [
    "Dunetrace",
    "DunetraceASGIMiddleware",
    "DunetraceClient",
    "DunetraceWSGIMiddleware",
    "PolicyConfigError",
    "PolicyError",
    "PolicyViolation",
    "RunContext",
    "__version__",
    "get_current_run",
]
