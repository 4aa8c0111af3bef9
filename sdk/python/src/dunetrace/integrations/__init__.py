"""Integrations of our SDK with other instrumentation: ``otel`` (runs also go to your own
OpenTelemetry provider) and ``otel_receiver`` (spans of your provider become runs)."""
