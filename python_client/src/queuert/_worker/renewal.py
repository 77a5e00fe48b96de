"""Lease renewal (staged mode): one renew call per interval for every job
in flight; a job reported not renewed is stopped."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from queuert._worker import job_state as st
from queuert._worker.store import Session
from queuert._worker.telemetry_reports import report_renewed
from queuert.job import JobContext


class Renewal:
    """Renews the leases of ``flights``; ``lose(job, reason)`` stops a job
    that is no longer ours."""

    def __init__(
        self,
        flights: dict[uuid.UUID, JobContext[Any]],
        lose: Callable[[JobContext[Any], str], None],
        *,
        lease: timedelta | None,
        interval: float | None,
        wake: Callable[[], None],
    ) -> None:
        self.flights = flights
        self.lose = lose
        self.fixed_interval = interval
        #: seconds between renewals: given, or a third of the lease (asked
        #: for, or the shortest seen in claims)
        self.every: float = (
            interval if interval is not None else (lease.total_seconds() / 3 if lease is not None else 20.0)
        )
        self.learn_lease = lease is None
        self.lease_estimate: float | None = None
        self.last = time.monotonic()
        self.check_ids: set[uuid.UUID] = set()
        self.wake = wake

    def observe_claim(self, leased_until: datetime | None, db_now: datetime | None) -> None:
        """A claimed job's lease (types' own leases: renew at a third of the
        shortest)."""
        if not self.learn_lease or leased_until is None or db_now is None:
            return
        est = (leased_until - db_now).total_seconds()
        if self.lease_estimate is None or est < self.lease_estimate:
            self.lease_estimate = est
            if self.fixed_interval is None:
                self.every = max(0.05, est / 3)

    def check(self, job_id: uuid.UUID) -> None:
        """A job_lost notification: renew at once to learn whether it is ours."""
        if job_id in self.flights:
            self.check_ids.add(job_id)
            self.wake()

    def next_at(self, now: float) -> float | None:
        if not self.flights:
            return None
        return now if self.check_ids else self.last + self.every

    async def run_due(self, session: Session, now: float) -> None:
        if not self.flights or (now < self.last + self.every and not self.check_ids):
            return
        self.check_ids.clear()
        ids = [jid for jid, job in self.flights.items() if job._state < st.LOST]
        self.last = time.monotonic()
        if not ids:
            return
        not_renewed = await session.renew(ids)
        report_renewed(len(ids) - len(not_renewed))
        for job_id, outcome in not_renewed:
            job = self.flights.get(job_id)
            if job is not None:
                self.lose(job, f"lease renewal: {outcome}")
