"""Embedded DuckDB storage for runs and events."""

from store.duckdb_store import DuckStore, RunFilter, StoreUnavailable, WriteBatch

__all__ = ["DuckStore", "RunFilter", "StoreUnavailable", "WriteBatch"]
