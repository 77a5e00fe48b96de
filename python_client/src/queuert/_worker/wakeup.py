"""When a worker claims: hints from notifications and timers, and the
events that wake its loops.

A claim that comes back short marks the current hint generation drained
for its kind of claimer; claimers of that kind then wait for a hint (a
job_ready notification, a resync, the due-time poll, a reconnect) to bump
the generation before they claim again. Kinds claim different job types
(atomic mode: the async-handler slots and the sync-handler slots), so one
kind finding nothing says nothing about the other's types: each has its
own marker, and the due-time poll waits until every kind is drained.
A job_ready that finds the worker idle hints only once the worker took a
unit of the type's wake budget (:mod:`queuert._worker.wake_budget`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence

from queuert._worker.wake_budget import WakeBudget
from queuert.notify.base import Notifier, NotifyEvent, Subscription


#: the kinds of claimer: staged mode's dispatcher; atomic mode's slots of
#: async handlers and of sync handlers (each kind claims its own types)
STAGED = "staged"
ASYNC_SLOTS = "async slots"
SYNC_SLOTS = "sync slots"


class Wakeup:
    """Claim coordination and wake-up events of one run (loop thread only)."""

    def __init__(self) -> None:
        self.hint_gen = 0
        #: the kinds of claimer of this run (staged: the one dispatcher)
        self.kinds: frozenset[str] = frozenset({STAGED})
        #: per kind, the hint generation its last short claim started at
        self.drained: dict[str, int] = {}
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

    def claimers(self, kinds: Sequence[str]) -> None:
        """The run's kinds of claimer (atomic mode: ASYNC_SLOTS, SYNC_SLOTS)."""
        self.kinds = frozenset(kinds)

    def claim_wanted(self, kind: str = STAGED) -> bool:
        return self.drained.get(kind) != self.hint_gen

    def all_drained(self) -> bool:
        """Every kind's last claim came back short at the current hint."""
        gen = self.hint_gen
        return all(self.drained.get(kind) == gen for kind in self.kinds)

    def mark_drained(self, gen: int, kind: str = STAGED) -> None:
        """A claim of ``kind`` started at hint generation ``gen`` came back short."""
        if self.hint_gen == gen:
            self.drained[kind] = gen
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
