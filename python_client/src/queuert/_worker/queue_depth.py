"""Queue depth for the metrics: a maintenance service that reads the
``stats`` view every ``interval`` seconds and hands the rows to
:class:`queuert.telemetry.queue_gauges.QueueGauges` (observable gauges the
SDK collects on its own schedule). Never due without a configured meter."""

from __future__ import annotations

from queuert._worker.store import Session
from queuert.telemetry.queue_gauges import QueueGauges


class QueueDepth:
    def __init__(self, *, interval: float) -> None:
        self.gauges = QueueGauges(interval)

    def next_at(self, now: float) -> float | None:
        return self.gauges.next_at()

    async def run_due(self, session: Session, now: float) -> None:
        next_at = self.gauges.next_at()
        if next_at is None or now < next_at:
            return
        self.gauges.update(await session.queue_stats())
