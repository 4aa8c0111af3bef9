"""Dunetrace Sidecar: the daemon's wiring (config, CLI, pipeline, HTTP API)."""

__version__ = "0.1.0"
