"""When a worker claims: hints from notifications and timers, and the
events that wake its loops.

A claim that comes back short marks the current hint generation drained;
claimers then wait for a hint (a job_ready notification, a resync, the
due-time poll, a reconnect) to bump the generation before they claim again.
A job_ready that finds the worker idle hints only once the worker took a
unit of the type's wake budget (:mod:`queuert._worker.wake_budget`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence

from queuert._worker.wake_budget import WakeBudget
from queuert.notify.base import Notifier, NotifyEvent, Subscription


class Wakeup:
    """Claim coordination and wake-up events of one run (loop thread only)."""

    def __init__(self) -> None:
        self.hint_gen = 0
        self.drained_gen: int | None = None
        #: set (and replaced) at every hint: what idle atomic slots wait on
        self.hint_event = asyncio.Event()
        #: when the due-time poll hints next (monotonic), None: ask the store
        self.poll_at: float | None = None
        #: wakes the staged dispatcher
        self.dispatcher = asyncio.Event()
        #: wakes the maintenance services
        self.maintenance = asyncio.Event()

    def hint(self) -> None:
        self.hint_gen += 1
        self.poll_at = None
        self.hint_event.set()
        self.hint_event = asyncio.Event()
        self.dispatcher.set()

    def claim_wanted(self) -> bool:
        return self.drained_gen != self.hint_gen

    def mark_drained(self, gen: int) -> None:
        """A claim started at hint generation ``gen`` came back short."""
        if self.hint_gen == gen:
            self.drained_gen = gen
            self.poll_at = None
            self.maintenance.set()

    def stop(self) -> None:
        """Wake every waiter: the run is stopping."""
        self.hint_event.set()
        self.dispatcher.set()
        self.maintenance.set()


async def listen(
    notifier: Notifier,
    type_names: Sequence[str],
    wakeup: Wakeup,
    on_job_lost: Callable[[uuid.UUID], None],
    budget: WakeBudget,
    idle: Callable[[], bool],
) -> Subscription:
    """Subscribe to job_ready (a hint to claim: through ``budget``, which
    makes an ``idle`` worker take a unit of the type's wake budget first),
    resync (a hint, always) and job_lost (a job of ours finished or taken
    from outside: ``on_job_lost`` checks it)."""

    def on_event(event: NotifyEvent) -> None:
        kind = event.kind
        if kind == "job_ready":
            budget.job_ready(event.payload, idle())
        elif kind == "resync":
            wakeup.hint()
        elif kind == "job_lost":
            try:
                job_id = uuid.UUID(event.payload)
            except ValueError:
                return
            on_job_lost(job_id)

    return await notifier.subscribe(on_event, kinds=("job_ready", "job_lost"), type_names=list(type_names))
