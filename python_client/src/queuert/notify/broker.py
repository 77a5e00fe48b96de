"""What the broker adapters (Redis, NATS) share: their own I/O thread, a
publish buffer that never blocks the caller, and a subscriber that
reconnects with backoff and sends ``resync``.

Why a thread: a notifier is called from everywhere. Sync code publishes
after commit through :func:`queuert.transaction_hooks`, which runs the
publish coroutine on a fresh event loop per transaction (``asyncio.run``);
workers and async web apps call it from their own loops; workers may live in
several threads. An asyncio broker client belongs to one loop, so every
broker call runs on this notifier's private loop, in a daemon thread started
on first use (and again in a forked child), and callers only hand work over:

* ``publish_*`` put the hint in a buffer and return at once. The sender task
  takes everything buffered and sends it in one round trip (per-type job
  counts add up, ids are deduplicated), so a burst of commits costs one
  message batch, and a broker outage or a slow broker never holds up a
  caller: when a send fails the hints are dropped with one warning per outage
  (workers fall back to polling). :meth:`BrokerNotifier.flush` waits until
  what was published so far has been sent or dropped.
* subscribers share one broker subscription per channel (event kind); it
  follows the union of the kinds the subscribers want. When the connection
  is lost it is reopened with capped exponential backoff, and every
  (re)connection delivers ``resync`` to every subscriber (events sent
  meanwhile are gone; a worker polls once).
* :meth:`BrokerNotifier.take_wake_hint` runs the adapter's atomic "take one
  unit" and answers True when the broker does not answer in time.

An adapter implements :meth:`_send`, :meth:`_take_hint`, :meth:`_listen`
(returning a :class:`ListenSession`) and :meth:`_close_clients`; all of them
run on the notifier's loop.
"""

from __future__ import annotations

import abc
import asyncio
import atexit
import concurrent.futures
import logging
import os
import random
import re
import threading
import weakref
from collections.abc import Callable, Collection, Coroutine, Iterable
from typing import Any, TypeVar

from queuert.notify.base import Notifier, NotifyEvent, ReadyTypes, Subscription, ready_counts

__all__ = ["BrokerNotifier", "ListenSession", "validate_prefix"]

logger = logging.getLogger("queuert.notify")

_T = TypeVar("_T")
_KINDS = ("job_ready", "chain_completed", "job_lost")
_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,64}")

#: every live broker notifier, to reset in a forked child and flush at exit
_live: weakref.WeakSet[BrokerNotifier] = weakref.WeakSet()


def validate_prefix(prefix: str) -> str:
    """A channel / subject / bucket prefix: letters, digits, ``_``, ``-``
    (valid in Redis keys and hash tags, NATS subjects and KV bucket names)."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ValueError(f"notify prefix must match [A-Za-z0-9_-]{{1,64}}, not {prefix!r}")
    return prefix


class ListenSession(abc.ABC):
    """One live broker subscription (made by :meth:`BrokerNotifier._listen`)."""

    @abc.abstractmethod
    async def add(self, kinds: Collection[str]) -> None:
        """Also subscribe to these kinds' channels, on the live connection."""

    @abc.abstractmethod
    async def remove(self, kinds: Collection[str]) -> None:
        """Stop receiving these kinds."""

    @abc.abstractmethod
    async def run(self) -> None:
        """Receive until the connection is lost: then raise (never return)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the subscription (quietly: the connection may be gone)."""


class _IoThread:
    """A daemon thread running the notifier's event loop."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float) -> None:
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # closed meanwhile
            return
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)


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
        self._io: _IoThread | None = None
        self._ready: dict[str, int] = {}
        self._chains: dict[str, None] = {}
        self._lost: dict[str, None] = {}
        self._enqueued = 0  # publish calls buffered so far
        self._kicked = False  # the sender was woken for the buffer's content
        self._init_loop_state()
        _live.add(self)

    def _init_loop_state(self) -> None:
        """State that lives on the I/O loop (reset with the thread)."""
        self._sent_seq = 0
        self._sent_cond: asyncio.Condition | None = None
        self._send_wake: asyncio.Event | None = None
        self._sender_task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._session: ListenSession | None = None
        self._live_kinds: frozenset[str] = frozenset()
        self._waiters: list[tuple[frozenset[str], asyncio.Future[str]]] = []
        self._publish_down = False
        self._listen_down = False
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
    async def _listen(self, kinds: frozenset[str], deliver: Callable[[str, str], None]) -> ListenSession:
        """Connect and subscribe to ``kinds``; ``deliver(kind, payload)`` for
        each message received."""

    @abc.abstractmethod
    async def _close_clients(self) -> None:
        """Close the broker connections (the notifier may be used again)."""

    def _forget_clients(self) -> None:
        """In a forked child: drop the parent's connections without using them."""

    # -- the I/O thread --------------------------------------------------------

    def _io_thread(self) -> _IoThread:
        with self._lock:
            io = self._io
            if io is None or io.pid != os.getpid() or io.loop.is_closed():
                io = self._io = _IoThread(f"queuert-notify-{self.prefix}")
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
        if io is None or io.loop.is_closed() or seq == 0:
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

    async def _subscribed(self, sub: Subscription) -> None:
        state = await self._on_io(self._ensure_listening())
        if state == "already":
            # the channels were live already: no (re)connection resync reached
            # this subscriber, and it may have missed events before it came
            sub.deliver(NotifyEvent("resync", ""))

    async def _unsubscribed(self, sub: Subscription) -> None:
        io = self._io
        if io is not None and not io.loop.is_closed():
            try:
                await asyncio.wrap_future(io.submit(self._follow_kinds()))
            except RuntimeError:
                pass

    async def _ensure_listening(self) -> str:
        """On the I/O loop: make the subscription cover every subscriber's
        kinds. Returns "already" (was live, or extended live), "connected"
        (a new connection just delivered resync) or "failed" (the first
        attempt failed; the reconnect loop keeps trying)."""
        kinds = self._wanted_kinds()
        session = self._session
        if session is not None:
            missing = kinds - self._live_kinds
            if not missing:
                return "already"
            try:
                await session.add(missing)
                self._live_kinds |= missing
                return "already"
            except Exception as exc:  # the connection broke: reconnect with all kinds
                logger.warning("%s notifier: subscribing failed (%s); reconnecting", self.broker_name, exc)
                await self._stop_listening()
        if self._listen_task is None or self._listen_task.done():
            self._listen_task = asyncio.get_running_loop().create_task(self._listen_main(), name="queuert-notify-listen")
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.append((kinds, waiter))
        return await waiter

    async def _follow_kinds(self) -> None:
        """On the I/O loop: a subscriber left; drop what nobody wants."""
        kinds = self._wanted_kinds()
        if not kinds:
            await self._stop_listening()
            return
        extra = self._live_kinds - kinds
        if self._session is not None and extra:
            try:
                await self._session.remove(extra)
                self._live_kinds -= extra
            except Exception as exc:
                logger.debug("%s notifier: unsubscribing failed: %s", self.broker_name, exc)

    def _settle_waiters(self, state: str) -> None:
        keep = []
        for kinds, waiter in self._waiters:
            if waiter.done():
                continue
            if state == "failed" or kinds <= self._live_kinds:
                waiter.set_result(state)
            else:
                keep.append((kinds, waiter))
        self._waiters = keep

    def _deliver(self, kind: str, payload: str) -> None:
        self._dispatch(NotifyEvent(kind, payload))

    async def _listen_main(self) -> None:
        delay = self.reconnect_initial
        while True:
            kinds = self._wanted_kinds()
            if not kinds:
                self._settle_waiters("failed")
                return
            session: ListenSession | None = None
            try:
                session = await self._listen(kinds, self._deliver)
                self._session, self._live_kinds = session, kinds
                self.connections += 1
                delay = self.reconnect_initial
                if self._listen_down:
                    self._listen_down = False
                    logger.info("%s notifier: subscribed again", self.broker_name)
                self._dispatch(NotifyEvent("resync", ""))
                self._settle_waiters("connected")
                # the session reads while we subscribe to kinds wanted since
                # (an adapter may wait for confirmations that run() reads)
                runner = asyncio.ensure_future(session.run())
                try:
                    missing = self._wanted_kinds() - kinds  # came while connecting
                    if missing:
                        await session.add(missing)
                        self._live_kinds |= missing
                        self._settle_waiters("connected")
                    await runner
                finally:
                    runner.cancel()
                    await asyncio.gather(runner, return_exceptions=True)
                raise ConnectionError("subscription ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._listen_down:
                    self._listen_down = True
                    logger.warning(
                        "%s notifier: subscription lost or unavailable (%s: %s); reconnecting "
                        "with backoff (workers poll meanwhile)",
                        self.broker_name,
                        type(exc).__name__,
                        exc,
                    )
                else:
                    logger.debug("%s notifier: reconnecting failed: %s", self.broker_name, exc)
                self._settle_waiters("failed")
            finally:
                self._session, self._live_kinds = None, frozenset()
                if session is not None:
                    await _quietly(session.close())
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.reconnect_max)

    async def _stop_listening(self) -> None:
        task, self._listen_task = self._listen_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._settle_waiters("failed")

    # -- lifecycle -------------------------------------------------------------

    async def close(self, timeout: float = 2.0) -> None:
        """Send what is buffered (up to ``timeout`` seconds), close every
        subscription and connection and stop the I/O thread. The notifier
        may be used again afterwards (it starts over)."""
        await super().close()
        await self.flush(timeout)
        with self._lock:
            io, self._io = self._io, None
        if io is None or io.loop.is_closed() or io.pid != os.getpid():
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
        await self._stop_listening()
        if self._sender_task is not None:
            self._sender_task.cancel()
            await asyncio.gather(self._sender_task, return_exceptions=True)
        await _quietly(self._close_clients())

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
        if io is None or io.loop.is_closed() or io.pid != os.getpid():
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


async def _quietly(aw: Coroutine[Any, Any, Any]) -> None:
    try:
        await aw
    except Exception as exc:
        logger.debug("notify cleanup failed: %s", exc)


def _reset_in_child() -> None:
    for notifier in list(_live):
        notifier._after_fork()


def _drain_all() -> None:
    # A script that starts a chain and exits: its hint still goes out.
    for notifier in list(_live):
        notifier._drain_at_exit(1.0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)
atexit.register(_drain_all)
