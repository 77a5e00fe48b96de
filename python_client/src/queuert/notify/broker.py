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

* ``publish_*`` put the hint in a buffer and return at once. The sender task
  takes everything buffered and sends it in one round trip (per-type job
  counts add up, ids are deduplicated), so a burst of commits costs one
  message batch, and a broker outage or a slow broker never holds up a
  caller: when a send fails the hints are dropped with one warning per outage
  (workers fall back to polling). :meth:`BrokerNotifier.flush` waits until
  what was published so far has been sent or dropped.
* subscribers share one broker subscription per channel (event kind), kept
  by :class:`queuert.notify._listener.SharedSubscription`: it follows the
  union of the kinds the subscribers want; a lost connection is reopened with
  capped exponential backoff, and every (re)connection delivers ``resync`` to
  every subscriber (events sent meanwhile are gone; a worker polls once).
* :meth:`BrokerNotifier.take_wake_hint` runs the adapter's atomic "take one
  unit" and answers True when the broker does not answer in time.

An adapter implements :meth:`_send`, :meth:`_take_hint`, :meth:`_listen`
(returning a :class:`ListenSession`) and :meth:`_close_clients`; all of them
run on the notifier's loop (:mod:`queuert.notify._iothread`).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import re
import threading
from collections.abc import Collection, Coroutine, Iterable
from typing import Any, TypeVar

from queuert.notify._iothread import IoThread, quietly, register
from queuert.notify._listener import Deliver, ListenSession, SharedSubscription
from queuert.notify.base import Notifier, NotifyEvent, ReadyTypes, Subscription, ready_counts

__all__ = ["BrokerNotifier", "ListenSession", "validate_prefix"]

logger = logging.getLogger("queuert.notify")

_T = TypeVar("_T")
_KINDS = ("job_ready", "chain_completed", "job_lost")
_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,64}")


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
    more are dropped (hints only).
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
        #: successful subscriber (re)connections, hints sent and dropped
        #: (for observability and tests)
        self.connections = 0
        self.published = 0
        self.dropped = 0
        self._lock = threading.Lock()  # the buffer and _io, from any thread
        self._io: IoThread | None = None
        self._ready: dict[str, int] = {}
        self._chains: dict[str, None] = {}
        self._lost: dict[str, None] = {}
        self._enqueued = 0  # publish calls buffered so far
        self._kicked = False  # the sender was woken for the buffer's content
        self._init_loop_state()
        register(self)

    def _init_loop_state(self) -> None:
        """State that lives on the I/O loop (reset with the thread)."""
        self._sent_seq = 0
        self._sent_cond: asyncio.Condition | None = None
        self._send_wake: asyncio.Event | None = None
        self._sender_task: asyncio.Task[None] | None = None
        self._listener = SharedSubscription(
            self.broker_name,
            self._wanted_kinds,
            self._listen,
            self._dispatch,
            self._count_connection,
            self.reconnect_initial,
            self.reconnect_max,
        )
        self._publish_down = False
        self._hint_down = False

    # -- adapter interface (all on the I/O loop) -------------------------------

    @abc.abstractmethod
    async def _send(self, ready: dict[str, int], chains: list[str], lost: list[str]) -> None:
        """Top up the wake budgets of ``ready`` and publish every event; raise
        on failure (the batch is then dropped)."""

    @abc.abstractmethod
    async def _take_hint(self, type_names: list[str]) -> bool:
        """Atomically take one budget unit of the first type that has one."""

    @abc.abstractmethod
    async def _listen(self, kinds: frozenset[str], deliver: Deliver) -> ListenSession:
        """Connect and subscribe to ``kinds``; ``deliver(kind, payload)`` for
        each message received."""

    @abc.abstractmethod
    async def _close_clients(self) -> None:
        """Close the broker connections (the notifier may be used again)."""

    def _forget_clients(self) -> None:
        """In a forked child: drop the parent's connections without using them."""

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

    async def publish_job_ready(self, type_names: ReadyTypes) -> None:
        counts = ready_counts(type_names)
        if counts:
            self._buffer(counts, (), ())

    async def publish_chain_completed(self, chain_ids: Iterable[str]) -> None:
        ids = [str(c) for c in chain_ids]
        if ids:
            self._buffer({}, ids, ())

    async def publish_job_lost(self, job_ids: Iterable[str]) -> None:
        ids = [str(j) for j in job_ids]
        if ids:
            self._buffer({}, (), ids)

    def publish_nowait(self, ready: ReadyTypes, chain_ids: Iterable[str], job_ids: Iterable[str]) -> bool:
        try:
            counts = ready_counts(ready)
            chains, lost = [str(c) for c in chain_ids], [str(j) for j in job_ids]
            if counts or chains or lost:
                self._buffer(counts, chains, lost)
        except Exception:  # a hint, after commit: never the caller's problem
            logger.exception("%s notifier: buffering hints failed", self.broker_name)
        return True

    def _buffer(self, ready: dict[str, int], chains: Iterable[str], lost: Iterable[str]) -> None:
        overflow = 0
        with self._lock:
            for name, n in ready.items():
                self._ready[name] = self._ready.get(name, 0) + n
            for target, ids in ((self._chains, chains), (self._lost, lost)):
                for i in ids:
                    if len(target) < self.max_buffered:
                        target[i] = None
                    elif i not in target:
                        overflow += 1
            self._enqueued += 1
            kick = not self._kicked
            self._kicked = True
        if overflow:
            self.dropped += overflow
            logger.warning("%s notifier: %d hint(s) dropped, the send buffer is full", self.broker_name, overflow)
        if kick:
            try:
                self._io_thread().loop.call_soon_threadsafe(self._kick_sender)
            except RuntimeError:  # the loop closed under us (close() racing): drop
                with self._lock:
                    self._kicked = False

    def _kick_sender(self) -> None:
        if self._send_wake is None:
            self._send_wake = asyncio.Event()
            self._sent_cond = asyncio.Condition()
        if self._sender_task is None or self._sender_task.done():
            self._sender_task = asyncio.get_running_loop().create_task(self._sender(), name="queuert-notify-send")
        self._send_wake.set()

    async def _sender(self) -> None:
        assert self._send_wake is not None and self._sent_cond is not None
        while True:
            await self._send_wake.wait()
            self._send_wake.clear()
            with self._lock:
                ready, self._ready = self._ready, {}
                chains, self._chains = list(self._chains), {}
                lost, self._lost = list(self._lost), {}
                seq = self._enqueued
                self._kicked = False
            if ready or chains or lost:
                await self._send_batch(ready, chains, lost)
            async with self._sent_cond:
                self._sent_seq = seq
                self._sent_cond.notify_all()

    async def _send_batch(self, ready: dict[str, int], chains: list[str], lost: list[str]) -> None:
        n = len(ready) + len(chains) + len(lost)
        try:
            await asyncio.wait_for(self._send(ready, chains, lost), self.send_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.dropped += n
            if not self._publish_down:
                self._publish_down = True
                logger.warning(
                    "%s notifier: publishing failed (%s: %s); hints are dropped until it works "
                    "again (workers poll meanwhile)",
                    self.broker_name,
                    type(exc).__name__,
                    exc,
                )
            else:
                logger.debug("%s notifier: publishing failed again: %s", self.broker_name, exc)
            return
        self.published += n
        if self._publish_down:
            self._publish_down = False
            logger.info("%s notifier: publishing works again", self.broker_name)

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every hint published before this call was sent (or
        dropped); False when that took longer than ``timeout`` seconds."""
        with self._lock:
            seq = self._enqueued
            io = self._io
        if io is None or not io.usable or seq == 0:
            return True
        try:
            await asyncio.wait_for(asyncio.wrap_future(io.submit(self._wait_sent(seq))), timeout)
        except asyncio.TimeoutError:
            return False
        except RuntimeError:  # the loop closed meanwhile: nothing left to send
            return True
        return True

    async def _wait_sent(self, seq: int) -> None:
        if self._sent_cond is None:
            self._kick_sender()
        assert self._sent_cond is not None
        async with self._sent_cond:
            await self._sent_cond.wait_for(lambda: self._sent_seq >= seq)

    # -- wake hints ------------------------------------------------------------

    async def take_wake_hint(self, type_names: Collection[str]) -> bool:
        names = list(dict.fromkeys(type_names))
        if not names or not self.wake_budgets:
            return True
        try:
            return await self._on_io(self._take_hint_guarded(names))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the loop itself failed: claim, to be safe
            logger.warning("%s notifier: wake hint unavailable (%s); claiming", self.broker_name, exc)
            return True

    async def _take_hint_guarded(self, names: list[str]) -> bool:
        try:
            taken = await asyncio.wait_for(self._take_hint(names), self.hint_timeout)
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

    def _wanted_kinds(self) -> frozenset[str]:
        kinds: set[str] = set()
        for sub in list(self._subscriptions):
            kinds |= set(_KINDS) if sub.kinds is None else set(sub.kinds) - {"resync"}
        return frozenset(kinds)

    def _count_connection(self) -> None:
        self.connections += 1

    async def _subscribed(self, sub: Subscription) -> None:
        state = await self._on_io(self._listener.ensure())
        if state == "already":
            # the channels were live already: no (re)connection resync reached
            # this subscriber, and it may have missed events before it came
            sub.deliver(NotifyEvent("resync", ""))

    async def _unsubscribed(self, sub: Subscription) -> None:
        io = self._io
        if io is not None and io.usable:
            try:
                await asyncio.wrap_future(io.submit(self._listener.follow()))
            except RuntimeError:
                pass

    # -- lifecycle -------------------------------------------------------------

    async def close(self, timeout: float = 2.0) -> None:
        """Send what is buffered (up to ``timeout`` seconds), close every
        subscription and connection and stop the I/O thread. The notifier
        may be used again afterwards (it starts over)."""
        await super().close()
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
        self._init_loop_state()
        with self._lock:
            self._kicked = False  # a new loop starts with a new sender

    async def _shutdown(self) -> None:
        await self._listener.stop()
        if self._sender_task is not None:
            self._sender_task.cancel()
            await asyncio.gather(self._sender_task, return_exceptions=True)
        await quietly(self._close_clients())

    def _after_fork(self) -> None:
        """In a forked child: the parent's thread, connections and
        subscribers are not ours; start from scratch."""
        self._lock = threading.Lock()
        self._io = None
        self._ready, self._chains, self._lost = {}, {}, {}
        self._kicked = False
        self._subscriptions.clear()
        self._init_loop_state()
        self._forget_clients()

    def _drain_at_exit(self, timeout: float) -> None:
        """At interpreter exit: send what is buffered, then stop the loop
        cleanly (a daemon thread killed mid-loop leaves "Task was destroyed"
        noise behind)."""
        io = self._io
        if io is None or not io.usable:
            return
        with self._lock:
            seq = self._enqueued
        try:
            if seq:
                io.submit(self._wait_sent(seq)).result(timeout)
            io.submit(self._shutdown()).result(timeout)
        except Exception:  # exiting: a hint more or less
            pass
        io.stop(timeout)

