"""The garbage-collector tuning (``cli.tune_gc``) the daemon and its translation workers apply once started."""

from __future__ import annotations

import gc

from dunetrace_sidecar.cli import GC_YOUNG_THRESHOLD, tune_gc


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
