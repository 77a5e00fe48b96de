"""The notify interface: how workers hear "a job is ready" without polling.

A :class:`Notifier` carries three kinds of events, each a plain string payload:

===================  ===========  =========================================
kind                 payload      meaning
===================  ===========  =========================================
``job_ready``        type name    a job of this type became pending
``chain_completed``  chain id     a chain completed
``job_lost``         job id       a running job was taken from its worker
``resync``           ``""``       the subscription (re)connected: events may
                                  have been missed, re-read the database
===================  ===========  =========================================

Events are hints, never the source of truth: a worker that misses every event
still makes progress by polling ``next_due_at``, and a spurious event costs one
empty claim. So an adapter may drop, duplicate or delay events, but it must
deliver ``resync`` after every (re)connection.

Publishing happens after commit, through :mod:`queuert.hooks` (and the worker
after its own acknowledgements); a rolled-back transaction publishes nothing.
The PostgreSQL notifier ignores publish calls because the engine already calls
``pg_notify`` inside the transaction, which PostgreSQL delivers on commit.

Wake hints (the budget of a ``job_ready``). Without one, every idle worker
of a type wakes on its ``job_ready`` and claims; all but one find nothing
(SKIP LOCKED makes that correct, only wasteful: N workers, N claims for one
job). An adapter with wake budgets (Redis, NATS with JetStream, in-process)
counts, per type, how many jobs the publishers said became ready (a
``{type: count}`` mapping given to :meth:`Notifier.publish_job_ready`; a plain
type name counts 1) and stores that budget, with an expiry, before it sends the
event. The contract for a woken worker, which :meth:`Notifier.take_wake_hint`
serves:

* on ``job_ready`` events (and only those: never after ``resync`` or its own
  poll timer), when idle with free slots, call
  ``await notifier.take_wake_hint(types)`` with the types of the events that
  woke it, once per wake-up (the claims that follow while claims come back
  full need no more units; a busy worker takes none);
* ``True``: it took one unit (or the adapter keeps no budgets, or knows
  the caller's subscription is the only one listening, and takes the unit
  in the background: :mod:`queuert.notify._alone`; the worker asks through
  :meth:`Notifier.take_wake_hint_or_defer`, which says so, to count the
  background answer in its stats): claim;
  ``False``: the budget is spent, other workers took those jobs: go back to
  sleep until the next event or poll;
* publishers say how many jobs became ready (:func:`queuert.transaction_hooks`
  and the worker's publisher count them per type), so a burst of N jobs lets
  up to N idle workers wake; a publisher that does not know counts publishes
  one unit per type and wakes one worker, whose claims then take the rest
  (the poll timer picks up what is left if that worker is full).

A budget is a hint like the event itself: a unit lost (expired, broker down,
a woken worker that crashed) delays a job until some worker's poll; a unit
too many costs one empty claim. Adapters return ``True`` whenever they cannot
tell (broker unreachable), so a broker outage degrades to today's behaviour,
never to workers that sleep on ready jobs.

Writing an adapter (Redis, NATS, ...): subclass :class:`Notifier`, implement
the three ``publish_*`` coroutines (one message per call is fine: the lists
are already deduplicated) and :meth:`Notifier.subscribe`, which must call the
listener on the subscriber's event loop (``loop.call_soon_threadsafe`` from
foreign threads) and never block it. Publishing must never raise into the
caller (log and drop: the caller's transaction has committed). For a broker
client, :class:`queuert.notify.broker.BrokerNotifier` does the threading,
reconnection and buffering; an adapter supplies the wire calls.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias, Union

__all__ = ["EVENT_KINDS", "Listener", "Notifier", "NotifyEvent", "ReadyTypes", "Subscription", "ready_counts"]

EVENT_KINDS = frozenset({"job_ready", "chain_completed", "job_lost", "resync"})


@dataclass(frozen=True, slots=True)
class NotifyEvent:
    """One notification: ``kind`` (see :data:`EVENT_KINDS`) and its payload."""

    kind: str
    payload: str


#: What :meth:`Notifier.publish_job_ready` takes: type names (each counts one
#: job) or ``{type name: jobs that became ready}``.
ReadyTypes: TypeAlias = Union[Iterable[str], Mapping[str, int]]


def ready_counts(type_names: ReadyTypes) -> dict[str, int]:
    """``{type: count}`` from what :meth:`Notifier.publish_job_ready` takes
    (a repeated name adds up; counts below 1 are left out)."""
    counts: dict[str, int] = {}
    # a dict (what the hooks and the worker pass) skips the ABC check
    if type(type_names) is dict or isinstance(type_names, Mapping):
        for name, n in type_names.items():
            if n >= 1:
                counts[str(name)] = counts.get(str(name), 0) + int(n)
        return counts
    if isinstance(type_names, str):  # one name, not its characters
        return {type_names: 1}
    for name in type_names:
        counts[name] = counts.get(name, 0) + 1
    return counts


#: A listener is a plain callable run on the subscriber's event loop; it must
#: return quickly (set an event, append to a list).
Listener = Callable[[NotifyEvent], None]


class Subscription:
    """A registered listener with its filters; :meth:`close` unsubscribes."""

    def __init__(
        self,
        notifier: Notifier,
        listener: Listener,
        kinds: Collection[str] | None,
        type_names: Collection[str] | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.notifier = notifier
        self.listener = listener
        self.kinds = frozenset(kinds) if kinds is not None else None
        self.type_names = frozenset(type_names) if type_names is not None else None
        self.loop = loop
        self.closed = False

    def wants(self, event: NotifyEvent) -> bool:
        if self.closed:
            return False
        if event.kind == "resync":
            return True
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if event.kind == "job_ready" and self.type_names is not None:
            return event.payload in self.type_names
        return True

    def deliver(self, event: NotifyEvent) -> None:
        """Hand ``event`` to the listener on the subscriber's loop (thread-safe)."""
        if not self.wants(event):
            return
        # Always through the loop's queue (also from the loop itself), so
        # events keep their publication order whatever thread publishes.
        if self.loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.loop.call_soon(self._call, event)
        else:
            self.loop.call_soon_threadsafe(self._call, event)

    def _call(self, event: NotifyEvent) -> None:
        if self.closed:
            return
        try:
            self.listener(event)
        except Exception:  # a listener bug must not kill the notifier
            import logging

            logging.getLogger("queuert.notify").exception(
                "notify listener %r failed", self.listener
            )

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.notifier._unsubscribe(self)


class Notifier(abc.ABC):
    """Publish/subscribe of queuert's hint events. See the module docs."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []

    # -- publishing (after commit) --------------------------------------------

    #: True when :meth:`take_wake_hint` consults a budget (a worker may skip
    #: the call when False: the answer is always True).
    wake_budgets: bool = False

    #: Whether a worker using this notifier keeps PostgreSQL's own NOTIFY
    #: (the engine's, and its batched ``pg_notify`` after commit) for
    #: LISTENers on the database, such as ``wait_for_chain``. False (the
    #: brokers, :class:`~queuert.notify.NullNotifier`): the worker turns the
    #: engine's notifications off in each of its transactions (``SET LOCAL
    #: queuert.notify = 'none'``, which works behind PgBouncer in transaction
    #: mode) and publishes only through this notifier; no NOTIFY, so no
    #: commit serialisation.
    database_notify: bool = True

    @abc.abstractmethod
    async def publish_job_ready(self, type_names: ReadyTypes) -> None:
        """Announce that jobs of these types became pending: type names (one
        job each) or ``{type name: count}``, the wake budget (module docs)."""

    @abc.abstractmethod
    async def publish_chain_completed(self, chain_ids: Iterable[str]) -> None:
        """Announce that these chains completed."""

    @abc.abstractmethod
    async def publish_job_lost(self, job_ids: Iterable[str]) -> None:
        """Announce that these running jobs were taken from their worker."""

    def publish_nowait(self, ready: ReadyTypes, chain_ids: Iterable[str], job_ids: Iterable[str]) -> bool:
        """Hand the three kinds of events over without awaiting anything, from
        any thread; False when this notifier cannot (then use the
        coroutines). For sync callers (:func:`queuert.transaction_hooks` in a
        thread without an event loop), which would otherwise start an event
        loop per transaction just to call them. Never raises."""
        return False

    def _hand_over_ready(self, ready: dict[str, int]) -> bool:
        """:meth:`publish_nowait` of ``job_ready`` alone, for a dict the caller
        hands over and never touches again (a sync hooks block's, after
        commit): an adapter may keep it instead of copying it."""
        return self.publish_nowait(ready, (), ())

    # -- wake hints ------------------------------------------------------------

    async def take_wake_hint(self, type_names: Collection[str]) -> bool:
        """Take one unit of wake budget of any of ``type_names``; see the
        module docs for the contract. True: claim now; False: another worker
        took it, sleep. This default (no budgets) is always True. Never
        raises: an adapter that cannot reach its store answers True."""
        return True

    async def take_wake_hint_or_defer(
        self, type_names: Collection[str], settled: Callable[[bool], None]
    ) -> bool | None:
        """:meth:`take_wake_hint` for a caller that keeps count (the
        worker's stats): True / False as there, or None: claim now, the unit
        is being taken meanwhile (a lone listener, :mod:`queuert.notify._alone`),
        and ``settled(taken)`` will be called once with the broker's answer,
        from any thread (not at all if the notifier closes first). This
        default answers at once."""
        return await self.take_wake_hint(type_names)

    # -- subscribing -----------------------------------------------------------

    async def subscribe(
        self,
        listener: Listener,
        *,
        kinds: Collection[str] | None = None,
        type_names: Collection[str] | None = None,
    ) -> Subscription:
        """Call ``listener(event)`` for each event from now on.

        ``kinds`` limits the event kinds (``resync`` is always delivered);
        ``type_names`` limits ``job_ready`` events to those job types. Returns
        once the subscription is live, or once the first attempt to make it
        live failed (the adapter then keeps retrying and sends ``resync`` when
        it succeeds). The listener runs on the calling coroutine's loop.
        """
        unknown = set(kinds or ()) - EVENT_KINDS
        if unknown:
            raise ValueError(f"unknown notify event kinds: {sorted(unknown)}")
        sub = Subscription(self, listener, kinds, type_names, asyncio.get_running_loop())
        self._subscriptions.append(sub)
        await self._subscribed(sub)
        return sub

    async def _subscribed(self, sub: Subscription) -> None:
        """Hook for adapters: start listening when the first subscriber comes."""

    async def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)
        await self._unsubscribed(sub)

    async def _unsubscribed(self, sub: Subscription) -> None:
        """Hook for adapters: stop listening when the last subscriber leaves."""

    def _anyone_wants(self, kind: str) -> bool:
        """Whether a subscriber may take events of ``kind`` (then build
        them): a worker alone subscribes to job_ready and resync, so the
        chains it completes are not made into events one by one."""
        return any(sub.kinds is None or kind in sub.kinds for sub in self._subscriptions)

    def _dispatch(self, event: NotifyEvent) -> None:
        """Deliver ``event`` to every matching subscriber (any thread)."""
        for sub in list(self._subscriptions):
            sub.deliver(event)

    async def close(self) -> None:
        """Close every subscription and release the adapter's resources."""
        for sub in list(self._subscriptions):
            await sub.close()
