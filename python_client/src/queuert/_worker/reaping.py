"""Reaping: running jobs whose lease expired (any worker's) go back to
pending; every worker does it now and then (safe concurrently). What it
reaped is announced after the commit through ``publish`` (job_lost with the
job ids, job_ready with the types of those back to pending), so idle
workers wake for them at once, whatever carries the worker's notifications."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from queuert._worker.stats import WorkerStats
from queuert._worker.store import Session
from queuert.job import JobContext

logger = logging.getLogger("queuert.worker")

_BATCH = 100


class Reaper:
    def __init__(
        self,
        flights: dict[uuid.UUID, JobContext[Any]],
        lose: Callable[[JobContext[Any], str], None],
        stats: WorkerStats,
        *,
        interval: float,
        worker_id: str,
        publish: Callable[[dict[str, int], list[str]], None] | None = None,
    ) -> None:
        self.flights = flights
        self.lose = lose
        self.stats = stats
        self.publish = publish
        self.interval = interval
        self.worker_id = worker_id
        # spread workers started together
        self.next = time.monotonic() + random.uniform(0, min(1.0, interval))

    def next_at(self, now: float) -> float | None:
        return self.next

    async def run_due(self, session: Session, now: float) -> None:
        if now < self.next:
            return
        while True:
            rows = await session.reap(_BATCH)
            self.stats.reaped += len(rows)
            ready: dict[str, int] = {}
            for r in rows:
                if r.status == "pending":
                    ready[r.type_name] = ready.get(r.type_name, 0) + 1
                logger.info(
                    "reaped job %s (lease of %s expired), now %s",
                    r.job_id,
                    r.previous_worker,
                    r.status,
                    extra={"job_id": str(r.job_id), "worker_id": self.worker_id},
                )
                job = self.flights.get(r.job_id)
                if job is not None:
                    self.lose(job, "lease expired and was reaped")
            if rows and self.publish is not None:
                self.publish(ready, [str(r.job_id) for r in rows])
            if len(rows) < _BATCH:
                break
        self.next = time.monotonic() + self.interval * random.uniform(0.8, 1.2)
