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


class QueueGauges:
    """The gauges of one meter; inactive (``due()`` always False) without one."""

    def __init__(self, interval: float = 15.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._counts: list[tuple[dict[str, Any], int]] = []
        self._ages: list[tuple[dict[str, Any], float]] = []
        self._next = 0.0
        self._meter = meter()
        if self._meter is None:
            return
        from opentelemetry.metrics import Observation

        def counts(_options: Any) -> list[Any]:
            with self._lock:
                return [Observation(v, attrs) for attrs, v in self._counts]

        def ages(_options: Any) -> list[Any]:
            with self._lock:
                return [Observation(v, attrs) for attrs, v in self._ages]

        self._meter.create_observable_gauge(
            "queuert.queue.jobs", [counts], unit="{job}", description="jobs per type and status (stats view)"
        )
        self._meter.create_observable_gauge(
            "queuert.queue.oldest_due_age",
            [ages],
            unit="s",
            description="how long the oldest due pending job of a type has waited",
        )

    @property
    def active(self) -> bool:
        return self._meter is not None

    def next_at(self) -> float | None:
        """When to read the view again (monotonic seconds); None when inactive."""
        return None if self._meter is None else self._next

    def update(self, rows: Iterable[tuple[str, str, int, float | None]]) -> None:
        counts, ages = [], []
        for type_name, status, count, age in rows:
            attrs = {a.SYSTEM: a.SYSTEM_NAME, a.DESTINATION: type_name, a.JOB_STATUS: status}
            counts.append((attrs, int(count)))
            if age is not None:
                ages.append(({a.SYSTEM: a.SYSTEM_NAME, a.DESTINATION: type_name}, float(age)))
        with self._lock:
            self._counts, self._ages = counts, ages
        self._next = time.monotonic() + self.interval
