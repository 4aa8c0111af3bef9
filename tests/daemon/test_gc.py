"""The garbage-collector tuning (``cli.tune_gc``) the daemon and its translation workers apply once
started, and the daemon's periodic full collection (``cli.collect_garbage_every``)."""

from __future__ import annotations

import asyncio
import gc
import weakref

from dunetrace_sidecar.cli import GC_YOUNG_THRESHOLD, collect_garbage_every, tune_gc


def test_startup_objects_frozen_and_young_collections_rarer() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_freeze_count() > 10_000  # the imported modules' objects, at least
        assert gc.get_threshold() == (50_000, before[1], before[2])
        assert GC_YOUNG_THRESHOLD == 50_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_cyclic_garbage_is_collected_on_the_daemons_schedule() -> None:
    """With young collections rare, a cycle can wait for the collector indefinitely; the daemon's
    periodic full collection frees it within an interval."""
    before = gc.get_threshold()
    try:
        tune_gc()
        gc.collect()  # nothing pending: the collector has no reason to run below
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None  # unreachable, but not collected by reference counting

        async def scenario() -> None:
            task = asyncio.create_task(collect_garbage_every(0.05))
            try:
                for _ in range(100):  # bounded: 5 s at most
                    if gone() is None:
                        return
                    await asyncio.sleep(0.05)
            finally:
                task.cancel()

        asyncio.run(scenario())
        assert gone() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
