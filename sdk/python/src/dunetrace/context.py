"""The run active in the current thread or asyncio task."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .run_context import RunContext

_current_run: ContextVar[RunContext | None] = ContextVar("dunetrace_current_run", default=None)


def get_current_run() -> RunContext | None:
    """The RunContext of the run open in this thread or asyncio task (``dt.run()``,
    ``@dt.agent()``), or None outside any run."""
    return _current_run.get()
