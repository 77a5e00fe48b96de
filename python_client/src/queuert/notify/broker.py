"""What the broker adapters (Redis, NATS) share: their own I/O thread, a
publish buffer that never blocks the caller, and a subscriber that
reconnects with backoff and sends ``resync``.

Why a thread: a notifier is called from everywhere. Sync code publishes
after commit through :func:`queuert.transaction_hooks` (through
:meth:`BrokerNotifier.publish_nowait`, from threads with no event loop, or
with ``asyncio.run`` per call from other code); workers and async web apps
call it from their own loops; workers may live in several threads. An asyncio broker client belongs to one loop, so every
broker call runs on this notifier's private loop, in a daemon thread started
on first use (and again in a forked child), and callers only hand work over:

* ``publish_*`` first offer the batch to the adapter's
  :meth:`BrokerNotifier._publish_direct` (Redis hands it to a plain writer
  thread: :mod:`queuert.notify._redis_direct`); otherwise
  they put it in a buffer and return at once, and the pump
  (:mod:`queuert.notify._sender`) sends everything buffered in one batch
  (per-type job counts add up, ids are deduplicated), so a burst of commits
  costs one message batch, and a broker outage or a slow broker never holds
  up a caller: when a send fails the hints are dropped with one warning per
  outage (workers fall back to polling). :meth:`BrokerNotifier.flush` waits
  until what was published so far has been sent or dropped.
* subscribers share one broker subscription per channel (event kind) and
  event loop, kept by :class:`queuert.notify._listener.SharedSubscription`
  and read on the subscribers' own loop, not on the I/O thread
  (:mod:`queuert.notify._loop_listeners`: no thread hand-over per event):
  it follows the union of the kinds that loop's subscribers want; a lost
  connection is reopened with capped exponential backoff, and every
  (re)connection delivers ``resync`` to every subscriber of that loop
  (events sent meanwhile are gone; a worker polls once).
* :meth:`BrokerNotifier.take_wake_hint` runs the adapter's atomic "take one
  unit" and answers True when the broker does not answer in time, or at once
  when the caller's subscription is the only one listening (:mod:`._alone`;
  the unit is owed, :mod:`._lone_takes`).

An adapter implements :meth:`_send`, :meth:`_take_up_to`, :meth:`_listen`
(returning a :class:`ListenSession`) and :meth:`_close_clients`; all of them
run on the notifier's loop (:mod:`queuert.notify._iothread`) but
:meth:`_listen` and its session, which run on the subscriber's loop with
connections of their own.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import re
import threading
from collections.abc import Callable, Collection, Coroutine, Iterable
from typing import Any, TypeVar

from queuert.notify._alone import ListenerCount, _ignore
from queuert.notify._audience import Audience
from queuert.notify._iothread import IoThread, quietly, register
from queuert.notify._listener import Deliver, ListenSession, SharedSubscription
from queuert.notify._lone_takes import LoneTakes
from queuert.notify._loop_listeners import LoopListeners
from queuert.notify._sender import HintSender
from queuert.notify.base import Notifier, NotifyEvent, ReadyTypes, Subscription, ready_counts

__all__ = ["BrokerNotifier", "ListenSession", "validate_prefix"]

logger = logging.getLogger("queuert.notify")

_T = TypeVar("_T")
_KINDS = ("job_ready", "chain_completed", "job_lost")
_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NO_IDS: list[str] = []  # never changed: no chain or job ids


def validate_prefix(prefix: str) -> str:
    """A channel / subject / bucket prefix: letters, digits, ``_``, ``-``
    (valid in Redis keys and hash tags, NATS subjects and KV bucket names)."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ValueError(f"notify prefix must match [A-Za-z0-9_-]{{1,64}}, not {prefix!r}")
    return prefix


class BrokerNotifier(Notifier):
    """Base of the broker adapters; see the module docs.

    ``prefix`` names the channels (and budget keys) of one queuert schema:
    publishers and workers of one schema must use the same. ``hint_ttl``:
    seconds a wake budget lives after its last top-up. ``reconnect_initial``
    / ``reconnect_max``: the subscriber's backoff. ``send_timeout``: the
    longest a batch of hints may take before it is dropped. ``hint_timeout``:
    the longest :meth:`take_wake_hint` waits for the broker (then True).
    ``max_buffered``: ids (chains, jobs) held while a send is in flight;
    more are dropped (hints only). ``batch_gap``: the least time between the
    starts of two batches of hints (a hint after a quiet spell goes at once;
    hints that follow a batch within the gap go together at its end), so a
    steady stream of commits costs one send per gap, not one per commit.
    ``max_batch_gap``: while every gap ends with hints waiting (a stream),
    the gap doubles up to this (:mod:`queuert.notify._spacing`); the first
    quiet gap brings it back to ``batch_gap``. ``audience_every``: seconds
    between counts of job_ready listeners (:mod:`queuert.notify._audience`).
    ``lone_take_delay``: seconds a lone listener's units are owed before one
    call takes them all (:mod:`queuert.notify._lone_takes`).
    """

    wake_budgets = True
    #: a broker carries every hint: workers send no NOTIFY (see Notifier)
    database_notify = False
    #: shown in log messages ("Redis", "NATS")
    broker_name = "broker"

    def __init__(
        self,
        *,
        prefix: str = "queuert",
        hint_ttl: float = 30.0,
        reconnect_initial: float = 0.05,
        reconnect_max: float = 5.0,
        send_timeout: float = 5.0,
        hint_timeout: float = 1.0,
        max_buffered: int = 100_000,
        batch_gap: float = 0.002,
        max_batch_gap: float = 0.016,
        audience_every: float = 1.0,
        lone_take_delay: float = 0.05,
    ) -> None:
        super().__init__()
        self.prefix = validate_prefix(prefix)
        if not hint_ttl > 0:
            raise ValueError("hint_ttl must be positive")
        self.hint_ttl = float(hint_ttl)
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        self.send_timeout = send_timeout
        self.hint_timeout = hint_timeout
        self.max_buffered = max_buffered
        if not lone_take_delay >= 0:
            raise ValueError("lone_take_delay must not be negative")
        self.lone_take_delay = float(lone_take_delay)
        if not batch_gap >= 0:
            raise ValueError("batch_gap must not be negative")
        self.batch_gap = float(batch_gap)
        if not max_batch_gap >= 0:
            raise ValueError("max_batch_gap must not be negative")
        #: never below batch_gap
        self.max_batch_gap = max(self.batch_gap, float(max_batch_gap))
        #: successful subscriber (re)connections (for observability and tests)
        self.connections = 0
        self._lock = threading.Lock()  # _io, from any thread
        self._io: IoThread | None = None
        self._sender = HintSender(
            self.broker_name,
            lambda: self._io_thread().loop,
            self._send,
            send_timeout,
            max_buffered,
            self.batch_gap,
            self.max_batch_gap,
        )
        #: the broker subscriptions, one per subscribers' loop (not the I/O loop's)
        self._loop_listeners = LoopListeners(self._new_listener)
        send_held = lambda ready: self._send_now(ready, _NO_IDS, _NO_IDS)  # noqa: E731
        loop, present = lambda: self._io_thread().loop, lambda: self._anyone_wants("job_ready")
        self._audience = Audience(self._count_audience, loop, send_held, audience_every, hint_timeout, present)
        self._init_loop_state()
        register(self)

    def _init_loop_state(self) -> None:
        """State that lives on the I/O loop (reset with the thread)."""
        self._sender.reset_loop_state()
        self._audience.reset()
        #: job_ready subscriptions on the broker (see queuert.notify._alone)
        self._listeners = ListenerCount(self._count_listeners, lambda: self._io_thread().loop)
        self._lone = LoneTakes(  # a lone listener's units, owed and taken together
            lambda names, n: self._take_up_to(names, n),
            lambda: self._io_thread().loop,
            lambda: self.lone_take_delay,
            lambda: self.hint_timeout,
            self.broker_name,
        )
        self._hint_down = False

    # -- adapter interface (all on the I/O loop) -------------------------------

    @abc.abstractmethod
    async def _send(self, ready: dict[str, int], chains: list[str], lost: list[str]) -> None:
        """Top up the wake budgets of ``ready`` and publish every event; raise
        on failure (the batch is then dropped)."""

    @abc.abstractmethod
    async def _take_up_to(self, type_names: list[str], n: int) -> int:
        """Atomically take up to ``n`` budget units, the first type's first
        (one for a take, more for a lone listener's owed units); how many."""

    @abc.abstractmethod
    async def _listen(self, kinds: frozenset[str], deliver: Deliver) -> ListenSession:
        """Connect and subscribe to ``kinds``, on the running loop (the
        subscribers'), with a connection of the session's own;
        ``deliver(kind, payload)`` for each message received."""

    @abc.abstractmethod
    async def _close_clients(self) -> None:
        """Close the broker connections (the notifier may be used again)."""

    def _forget_clients(self) -> None:
        """In a forked child: drop the parent's connections without using them."""

    def _publish_direct(self, ready: dict[str, int], chains: list[str], lost: list[str]) -> bool:
        """Send from the caller's thread without waiting, if the adapter can
        (True: sent); any thread, never blocks, never raises."""
        return False

    async def _confirm_direct(self) -> None:
        """For flush(): wait until what _publish_direct sent has arrived."""

    async def _send_deferred(self) -> None:
        """Send now what the adapter's _send left for later (flush, exit)."""

    async def _drop_deferred(self) -> None:
        """Closing: drop what _send left for later."""

    async def _count_listeners(self) -> int | None:
        """How many subscriptions the broker has on the job_ready channel,
        or None (unknown: every take goes to the broker)."""
        return None

    #: job_ready subscriptions, 0 only when the broker says so (queuert.notify._audience)
    _count_audience = _count_listeners

    # -- the I/O thread --------------------------------------------------------

    def _io_thread(self) -> IoThread:
        with self._lock:
            io = self._io
            if io is None or not io.usable:
                io = self._io = IoThread(f"queuert-notify-{self.prefix}")
            return io

    async def _on_io(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the I/O loop and await its result from any loop."""
        return await asyncio.wrap_future(self._io_thread().submit(coro))

    # -- publishing ------------------------------------------------------------

    @property
    def published(self) -> int:
        """Hints sent (a job type with its count, a chain id, a job id)."""
        return self._sender.published

    @property
    def dropped(self) -> int:
        """Hints dropped (the broker was down, or the buffer full)."""
        return self._sender.dropped

    @property
    def skipped(self) -> int:
        """job_ready hints dropped: nobody listened (queuert.notify._audience)."""
        return self._audience.skipped

    async def publish_job_ready(self, type_names: ReadyTypes) -> None:
        counts = ready_counts(type_names)
        if counts:
            self._publish(counts, [], [])

    async def publish_chain_completed(self, chain_ids: Iterable[str]) -> None:
        ids = [str(c) for c in chain_ids]
        if ids:
            self._publish({}, ids, [])

    async def publish_job_lost(self, job_ids: Iterable[str]) -> None:
        ids = [str(j) for j in job_ids]
        if ids:
            self._publish({}, [], ids)

    def publish_nowait(self, ready: ReadyTypes, chain_ids: Iterable[str], job_ids: Iterable[str]) -> bool:
        try:
            # a producer's commit has job_ready only: no work for the rest
            counts = ready_counts(ready) if ready else {}
            chains = [str(c) for c in chain_ids] if chain_ids else []
            lost = [str(j) for j in job_ids] if job_ids else []
            if counts or chains or lost:
                self._publish(counts, chains, lost)
        except Exception:  # a hint, after commit: never the caller's problem
            logger.exception("%s notifier: buffering hints failed", self.broker_name)
        return True

    def _hand_over_ready(self, ready: dict[str, int]) -> bool:
        # a hooks block's own dict of one valid type (a producer's commit): to the hold
        if len(ready) == 1:
            (name,) = ready
            n = ready[name]
            if type(name) is str and type(n) is int and n >= 1:
                try:
                    if not self._audience.hold(ready):
                        self._send_now(ready, _NO_IDS, _NO_IDS)
                except Exception:  # a hint, after commit: never the caller's problem
                    logger.exception("%s notifier: buffering hints failed", self.broker_name)
                return True
        return self.publish_nowait(ready, (), ())

    def _publish(self, ready: dict[str, int], chains: list[str], lost: list[str]) -> None:
        if chains or lost or not self._audience.hold(ready):  # job_ready alone may wait for a listener
            self._send_now(ready, chains, lost)

    def _send_now(self, ready: dict[str, int], chains: list[str], lost: list[str]) -> None:
        if not self._publish_direct(ready, chains, lost):
            self._sender.add(ready, chains, lost)

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every hint published before this call was sent (or
        dropped), held ones and deferred top-ups included, and a lone
        listener's owed units taken; False after ``timeout`` seconds."""
        seq = self._sender.enqueued
        with self._lock:
            io = self._io
        if io is None or not io.usable:
            return True
        try:
            await asyncio.wait_for(self._flushed(io, seq), timeout)
        except asyncio.TimeoutError:
            return False
        except RuntimeError:  # the loop closed meanwhile: nothing left to send
            return True
        return True

    async def _flushed(self, io: IoThread, seq: int) -> None:
        await asyncio.wrap_future(io.submit(self._audience.settle()))
        await self._confirm_direct()
        # what the direct path could not send went to the buffer meanwhile
        seq = max(seq, self._sender.enqueued)
        if seq:
            await asyncio.wrap_future(io.submit(self._sender.wait_sent(seq)))
        await asyncio.wrap_future(io.submit(self._send_deferred()))  # top-ups first: the units owed may be them
        await asyncio.wrap_future(io.submit(self._lone.settle_now()))

    # -- wake hints ------------------------------------------------------------

    async def take_wake_hint(self, type_names: Collection[str]) -> bool:
        return await self.take_wake_hint_or_defer(type_names, _ignore) is not False

    async def take_wake_hint_or_defer(
        self, type_names: Collection[str], settled: Callable[[bool], None]
    ) -> bool | None:
        names = list(dict.fromkeys(type_names))
        if not names or not self.wake_budgets:
            return True
        if self._alone(names):
            # nobody to share the budget with: claim now; the unit is owed,
            # taken later with others (then settled() says what the budget said)
            return None if self._lone.owe(names, settled) else True
        try:
            return await self._on_io(self._take_hint_guarded(names))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the loop itself failed: claim, to be safe
            logger.warning("%s notifier: wake hint unavailable (%s); claiming", self.broker_name, exc)
            return True

    def _alone(self, names: list[str]) -> bool:
        """One subscriber here wants job_ready of ``names``, our subscription
        is live, and the broker counts no other (a recent count)."""
        wanting = 0
        for sub in list(self._subscriptions):
            if sub.closed or (sub.kinds is not None and "job_ready" not in sub.kinds):
                continue
            if sub.type_names is None or not sub.type_names.isdisjoint(names):
                wanting += 1
        if wanting != 1:
            return False
        listener = self._loop_listeners.get(asyncio.get_running_loop())
        if listener is None or listener.session is None or "job_ready" not in listener.live:
            return False
        return self._listeners.alone()

    async def _take_hint_guarded(self, names: list[str]) -> bool:
        try:
            taken = await asyncio.wait_for(self._take_up_to(names, 1), self.hint_timeout) > 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._hint_down:
                self._hint_down = True
                logger.warning(
                    "%s notifier: wake budgets unavailable (%s: %s); every woken worker claims",
                    self.broker_name,
                    type(exc).__name__,
                    exc,
                )
            return True
        self._hint_down = False
        return taken

    # -- subscribing -----------------------------------------------------------

    def _new_listener(self) -> SharedSubscription:
        """The broker subscription of the running loop's subscribers (its
        methods all run on that loop)."""
        return SharedSubscription(
            self.broker_name,
            lambda: self._wanted_kinds(asyncio.get_running_loop()),
            self._listen,
            lambda event: self._dispatch_here(asyncio.get_running_loop(), event),
            self._count_connection,
            self.reconnect_initial,
            self.reconnect_max,
        )

    def _wanted_kinds(self, loop: asyncio.AbstractEventLoop) -> frozenset[str]:
        kinds: set[str] = set()
        for sub in list(self._subscriptions):
            if sub.loop is loop:
                kinds |= set(_KINDS) if sub.kinds is None else set(sub.kinds) - {"resync"}
        return frozenset(kinds)

    def _dispatch_here(self, loop: asyncio.AbstractEventLoop, event: NotifyEvent) -> None:
        """An event read on ``loop`` (running): to its subscribers there, at
        once (a loop turn less; they hear that loop's events in the order
        read)."""
        for sub in list(self._subscriptions):
            if sub.loop is loop and sub.wants(event):
                sub._call(event)

    def _count_connection(self) -> None:
        self.connections += 1
        self._listeners.forget()

    async def _subscribed(self, sub: Subscription) -> None:
        self._listeners.forget()
        state = await self._loop_listeners.here().ensure()
        if sub.kinds is None or "job_ready" in sub.kinds:
            self._audience.wake()  # a listener here (live now): held hints go
        if state == "already":
            # the channels were live already: no (re)connection resync reached
            # this subscriber, and it may have missed events before it came
            sub.deliver(NotifyEvent("resync", ""))

    async def _unsubscribed(self, sub: Subscription) -> None:
        self._listeners.forget()
        await self._loop_listeners.follow(sub.loop)

    # -- lifecycle -------------------------------------------------------------

    async def close(self, timeout: float = 2.0) -> None:
        """Send what is buffered (up to ``timeout`` seconds), close every
        subscription and connection and stop the I/O thread. The notifier
        may be used again afterwards (it starts over)."""
        await super().close()
        await self._loop_listeners.stop_all(timeout)
        await self.flush(timeout)
        with self._lock:
            io, self._io = self._io, None
        if io is None or not io.usable:
            return
        try:
            await asyncio.wrap_future(io.submit(self._shutdown()))
        except RuntimeError:
            pass
        io.stop(timeout)
        self._init_loop_state()  # a new loop starts with a new pump

    async def _shutdown(self) -> None:
        await self._sender.stop()
        await self._lone.cancel()
        await self._drop_deferred()
        await quietly(self._close_clients())

    def _after_fork(self) -> None:
        """In a forked child: the parent's thread, connections and
        subscribers are not ours; start from scratch."""
        self._lock = threading.Lock()
        self._io = None
        self._sender.after_fork()
        self._audience.after_fork()
        self._subscriptions.clear()
        self._loop_listeners.clear()
        self._init_loop_state()
        self._forget_clients()

    def _drain_at_exit(self, timeout: float) -> None:
        """At interpreter exit: send what is buffered, then stop the loop
        cleanly (a daemon thread killed mid-loop leaves "Task was destroyed"
        noise behind)."""
        io = self._io
        if io is None or not io.usable:
            return
        try:
            io.submit(self._audience.settle()).result(timeout)
            seq = self._sender.enqueued
            if seq:
                io.submit(self._sender.wait_sent(seq)).result(timeout)
            io.submit(self._send_deferred()).result(timeout)
            io.submit(self._lone.settle_now()).result(timeout)
            io.submit(self._shutdown()).result(timeout)
        except Exception:  # exiting: a hint more or less
            pass
        io.stop(timeout)

