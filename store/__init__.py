"""Embedded DuckDB storage for runs and events."""

from store.duckdb_store import DuckStore, RunFilter, SignalFilter, StoreUnavailable, WriteBatch

__all__ = ["DuckStore", "RunFilter", "SignalFilter", "StoreUnavailable", "WriteBatch"]
