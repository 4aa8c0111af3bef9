"""Embedded DuckDB storage for runs and events."""

from store.duckdb_store import DuckStore, FixRecord, RunFilter, SignalFilter, StoreUnavailable, WriteBatch

__all__ = ["DuckStore", "FixRecord", "RunFilter", "SignalFilter", "StoreUnavailable", "WriteBatch"]
