"""OpenTelemetry for queuert: traces, metrics and log fields (docs/observability.md).

queuert depends on ``opentelemetry-api`` only (the ``otel`` extra) and imports
it lazily: without it installed, or with no SDK configured (no tracer or
meter provider set), every instrumented path costs one check and emits
nothing. With an SDK configured, instrumentation is on unless turned off
with :func:`set_enabled` (``set_enabled(False)``, or ``traces=False`` /
``metrics=False`` for one of them) or the environment variable
``QUEUERT_TELEMETRY`` (``off``; ``metrics`` or ``traces`` for only that
one; read at import).

- :mod:`queuert.telemetry.tracing`: the client's spans (``create <type>``,
  ``settle <type>``), reported only when the caller's transaction commits.
- :mod:`queuert.telemetry.attempts`: the worker's ``process <type>`` span
  per attempt and the outcome it records.
- :mod:`queuert.telemetry.resolution`: the ``resolve <type>`` span a blocker
  chain's completion emits per job that waited on it.
- :mod:`queuert.telemetry.metrics`: counters and histograms.
- :mod:`queuert.telemetry.queue_gauges`: queue depth per type and status.
- :mod:`queuert.telemetry.log_fields`: the ``extra`` of the worker's logs.
"""

from __future__ import annotations

from .switch import is_enabled, set_enabled

__all__ = ["is_enabled", "set_enabled"]
