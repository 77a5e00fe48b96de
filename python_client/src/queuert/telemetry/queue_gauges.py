"""Queue depth as observable gauges, from the ``stats`` view.

A worker reads ``stats`` every ``interval`` seconds (on its maintenance
connection, ``queuert._worker.queue_depth``) and hands the rows to
:meth:`QueueGauges.update`;
the gauges report the last rows read whenever the SDK collects, so a
collection never waits on the database. Gauges:

- ``queuert.queue.jobs``: jobs per ``messaging.destination.name`` (type) and
  ``queuert.job.status``;
- ``queuert.queue.oldest_due_age``: seconds the oldest due pending job of a
  type has waited.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from . import attributes as a
from .switch import meter

__all__ = ["QueueGauges"]


class _Readings:
    """The last rows read, and the two gauges reporting them: one per meter,
    shared by every worker of the process (the instruments are registered
    once; a second registration would not add its callback)."""

    def __init__(self, m: Any) -> None:
        from opentelemetry.metrics import Observation

        self.lock = threading.Lock()
        self.counts: list[tuple[dict[str, Any], int]] = []
        self.ages: list[tuple[dict[str, Any], float]] = []

        def counts(_options: Any) -> list[Any]:
            with self.lock:
                return [Observation(v, attrs) for attrs, v in self.counts]

        def ages(_options: Any) -> list[Any]:
            with self.lock:
                return [Observation(v, attrs) for attrs, v in self.ages]

        m.create_observable_gauge(
            "queuert.queue.jobs", [counts], unit="{job}", description="jobs per type and status (stats view)"
        )
        m.create_observable_gauge(
            "queuert.queue.oldest_due_age",
            [ages],
            unit="s",
            description="how long the oldest due pending job of a type has waited",
        )


_registry_lock = threading.Lock()
_registry: dict[int, tuple[Any, _Readings]] = {}  # id(meter) -> (meter, readings)


def _readings_for(m: Any) -> _Readings:
    with _registry_lock:
        found = _registry.get(id(m))
        if found is None or found[0] is not m:
            found = (m, _Readings(m))
            _registry[id(m)] = found
        return found[1]


class QueueGauges:
    """One worker's reader of the gauges' rows; inactive (``next_at()``
    None) when no meter is configured at its start."""

    def __init__(self, interval: float = 15.0) -> None:
        self.interval = interval
        self._next = 0.0
        m = meter()
        self._readings = None if m is None else _readings_for(m)

    @property
    def active(self) -> bool:
        return self._readings is not None

    def next_at(self) -> float | None:
        """When to read the view again (monotonic seconds); None when inactive."""
        return None if self._readings is None else self._next

    def update(self, rows: Iterable[tuple[str, str, int, float | None]]) -> None:
        readings = self._readings
        if readings is None:
            return
        counts, ages = [], []
        for type_name, status, count, age in rows:
            attrs = {a.SYSTEM: a.SYSTEM_NAME, a.DESTINATION: type_name, a.JOB_STATUS: status}
            counts.append((attrs, int(count)))
            if age is not None:
                ages.append(({a.SYSTEM: a.SYSTEM_NAME, a.DESTINATION: type_name}, float(age)))
        with readings.lock:
            readings.counts, readings.ages = counts, ages
        self._next = time.monotonic() + self.interval
