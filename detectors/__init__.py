"""Failure detectors over run events.

Pure standard-library Python: importable without grpc, protobuf, aiohttp or duckdb, so that
an in-process SDK can reuse it. The run event types live here because detectors consume them.
"""

from .events import EVENT_KINDS, RunEvent, RunRow
from .patterns import InjectionMatch, scan_injection

__all__ = ["EVENT_KINDS", "InjectionMatch", "RunEvent", "RunRow", "scan_injection"]
