"""Which event loop reads a broker notifier's subscription: every loop that
has subscribers reads its own (one :class:`SharedSubscription` per loop,
shared by that loop's subscribers), so an event goes from the socket to its
listener on the thread that runs the listener. Read on the notifier's I/O
thread instead, each event woke that thread and then, through a
``call_soon_threadsafe`` hand-over, the listener's (0.04-0.17 ms at p50 on
a loaded 2-core machine; benchmarks/README.md, "Fifth pass (wake11)").
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from queuert.notify._listener import SharedSubscription

__all__ = ["LoopListeners"]

logger = logging.getLogger("queuert.notify")

#: the longest an unsubscribe from another loop waits for the subscriber's loop
_CROSS_LOOP_TIMEOUT = 5.0


class LoopListeners:
    """The subscriptions of one notifier, per event loop (any thread)."""

    def __init__(self, make: Callable[[], SharedSubscription]) -> None:
        self._make = make  # a new subscription for the running loop
        self._lock = threading.Lock()
        self._by_loop: dict[asyncio.AbstractEventLoop, SharedSubscription] = {}

    def here(self) -> SharedSubscription:
        """The running loop's subscription, made if it has none."""
        loop = asyncio.get_running_loop()
        with self._lock:
            listener = self._by_loop.get(loop)
            if listener is None:
                # loops that ended without unsubscribing (their tasks were
                # cancelled, which closed the connections): forget them
                for old in [old for old in self._by_loop if old.is_closed()]:
                    del self._by_loop[old]
                listener = self._by_loop[loop] = self._make()
            return listener

    def get(self, loop: asyncio.AbstractEventLoop) -> SharedSubscription | None:
        with self._lock:
            return self._by_loop.get(loop)

    def discard(self, loop: asyncio.AbstractEventLoop, listener: SharedSubscription) -> None:
        """``loop``'s subscription stopped (nobody there wants events)."""
        with self._lock:
            if self._by_loop.get(loop) is listener:
                del self._by_loop[loop]

    def clear(self) -> None:
        """In a forked child: the parent's loops are not ours (their
        connections are dropped unused with the adapter's clients)."""
        self._lock = threading.Lock()
        self._by_loop = {}

    async def follow(self, loop: asyncio.AbstractEventLoop) -> None:
        """A subscriber of ``loop`` left: its subscription drops what nobody
        there wants, and is forgotten once it wants nothing (from any loop)."""
        listener = self.get(loop)
        if listener is None:
            return

        async def follow() -> None:
            await listener.follow()
            if listener.task is None:
                self.discard(loop, listener)

        try:
            await asyncio.wait_for(_on_loop(loop, follow()), _CROSS_LOOP_TIMEOUT)
        except asyncio.TimeoutError:  # that loop stopped meanwhile: so did its subscription
            pass

    async def stop_all(self, timeout: float) -> None:
        """Stop every loop's subscription, each on its own loop (from any
        loop; a loop that no longer runs has stopped its own)."""
        with self._lock:
            listeners, self._by_loop = list(self._by_loop.items()), {}
        for loop, listener in listeners:
            try:
                await asyncio.wait_for(_on_loop(loop, listener.stop()), timeout)
            except Exception as exc:  # that loop is stuck or gone: its thread's problem
                logger.debug("notify: stopping a loop's subscription failed: %s", exc)


async def _on_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> None:
    """Await ``coro`` on ``loop``: here if it is the running loop, else
    through that loop's thread; dropped when that loop no longer runs."""
    if loop is asyncio.get_running_loop():
        await coro
        return
    if loop.is_closed() or not loop.is_running():
        coro.close()
        return
    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))
