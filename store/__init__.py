"""Embedded DuckDB storage for runs and events."""

from store.duckdb_store import (
    Delivery,
    DeliveryUpdate,
    DuckStore,
    FixRecord,
    RunFilter,
    SignalFilter,
    StoreUnavailable,
    WriteBatch,
)

__all__ = [
    "Delivery",
    "DeliveryUpdate",
    "DuckStore",
    "FixRecord",
    "RunFilter",
    "SignalFilter",
    "StoreUnavailable",
    "WriteBatch",
]
