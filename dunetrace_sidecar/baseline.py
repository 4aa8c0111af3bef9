"""STEP_COUNT_INFLATION's baseline: P75 step count of each agent's last 50 completed runs.

Loaded from the store once per agent (the first time one of its runs is seen), then kept
current in memory as runs complete — never a query per event, never refreshed on a timer.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable

RUNS_IN_BASELINE = 50
MIN_RUNS_FOR_BASELINE = 10


class BaselineCache:
    def __init__(self, load: Callable[[str, int], list[int]]) -> None:
        """``load(agent_id, n)``: the step counts of the agent's latest n completed runs, newest first."""
        self._load = load
        self._steps: dict[str, deque[int]] = {}
        self._p75: dict[str, float | None] = {}

    def missing(self, agent_ids: set[str]) -> list[str]:
        return [agent_id for agent_id in agent_ids if agent_id not in self._steps]

    def load(self, agent_ids: list[str]) -> dict[str, list[int]]:
        """Executor thread: read the baselines of agents not known yet."""
        return {agent_id: self._load(agent_id, RUNS_IN_BASELINE) for agent_id in agent_ids}

    def install(self, loaded: dict[str, list[int]]) -> None:
        for agent_id, newest_first in loaded.items():
            if agent_id not in self._steps:
                self._steps[agent_id] = deque(reversed(newest_first), maxlen=RUNS_IN_BASELINE)
                self._p75[agent_id] = _p75(self._steps[agent_id])

    def record(self, agent_id: str, steps: int) -> None:
        """A run of this agent completed with ``steps`` steps."""
        window = self._steps.setdefault(agent_id, deque(maxlen=RUNS_IN_BASELINE))
        window.append(steps)
        self._p75[agent_id] = _p75(window)

    def p75(self, agent_id: str) -> float | None:
        return self._p75.get(agent_id)


def _p75(steps: deque[int]) -> float | None:
    """The 75th percentile, linear between closest ranks (numpy's default, 'inclusive')."""
    if len(steps) < MIN_RUNS_FOR_BASELINE:
        return None
    return statistics.quantiles(steps, n=4, method="inclusive")[2]
