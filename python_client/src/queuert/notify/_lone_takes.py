"""A lone listener's wake-budget units, taken later and together.

A listener whose ``job_ready`` subscription is the only one on the broker
claims at once (:mod:`queuert.notify._alone`); its unit is still taken, so
the budget stays right for workers that join. Taken at once, that take ran
on the notifier's I/O thread while the worker claimed: a script call
(Redis) or a KV read and compare-and-set (NATS, two JetStream round trips),
Python holding the GIL against the worker's loop, and a broker write that
made the NATS producer's next top-up miss its remembered revision. On this
machine that was 0.7 ms of a NATS wake-up's p50 (benchmarks/README.md,
"Eighth pass").

So the units are owed: each lone wake-up adds one to the debt of its types,
and ``delay`` seconds after the first debt one task on the I/O loop takes
everything owed, one broker call per distinct list of types (the adapter's
``take_up_to``: up to n units, the first type's first). The outcome settles
each wake-up as its own take would have: the first k of n taken, the rest
declined (the budget was spent). A broker that fails or does not answer
within ``timeout`` settles them taken, as a take that fails answers True.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable

from queuert.notify._deferred import Deferred

__all__ = ["LoneTakes"]

logger = logging.getLogger("queuert.notify")

Settled = Callable[[bool], None]


class LoneTakes:
    """Owed units of one notifier; every method but ``owe`` and ``busy`` runs
    on its I/O loop. ``delay`` and ``timeout`` are read when used (the
    notifier's settings)."""

    def __init__(
        self,
        take_up_to: Callable[[list[str], int], Awaitable[int]],
        loop: Callable[[], asyncio.AbstractEventLoop],
        delay: Callable[[], float],
        timeout: Callable[[], float],
        broker_name: str,
    ) -> None:
        self._take_up_to = take_up_to
        self._loop = loop
        self.delay = delay
        self.timeout = timeout
        self.broker_name = broker_name
        self._lock = threading.Lock()
        #: per list of types (in the caller's order), the wake-ups owing a unit
        self._owed: dict[tuple[str, ...], list[Settled]] = {}
        self._scheduled = False  # asked for, on its way or running (any thread)
        self._later = Deferred(self._take_owed, delay, "queuert-notify-lone-takes")
        #: wake-ups settled (for tests)
        self.settled = 0

    @property
    def busy(self) -> bool:
        """Units owed or being taken (any thread)."""
        with self._lock:
            return bool(self._owed) or self._scheduled

    def owe(self, names: list[str], settled: Settled) -> bool:
        """One unit of the first of ``names`` that has one, taken later (any
        thread); False when the I/O loop is closing (nothing owed)."""
        with self._lock:
            self._owed.setdefault(tuple(names), []).append(settled)
            if self._scheduled:
                return True
            self._scheduled = True
        try:
            self._loop().call_soon_threadsafe(self._schedule)
        except RuntimeError:  # closing: nobody will take it
            with self._lock:
                self._owed.clear()
                self._scheduled = False
            return False
        return True

    def _schedule(self) -> None:
        self._later.ask()

    async def _take_owed(self) -> None:
        with self._lock:
            owed, self._owed = self._owed, {}
        try:
            for names, waiting in owed.items():
                taken = await self._take(list(names), len(waiting))
                for i, settled in enumerate(waiting):
                    self._settle(settled, i < taken)
        finally:
            with self._lock:
                again = bool(self._owed)  # owed while these were taken
                self._scheduled = again
            if again:
                self._later.ask()

    async def _take(self, names: list[str], n: int) -> int:
        try:
            return await asyncio.wait_for(self._take_up_to(names, n), self.timeout())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # as a take that fails: claimed, count it taken
            logger.debug("%s notifier: a lone listener's units were not taken (%s)", self.broker_name, exc)
            return n

    def _settle(self, settled: Settled, taken: bool) -> None:
        try:
            settled(taken)
        except Exception:
            logger.exception("%s notifier: a wake hint's settled callback failed", self.broker_name)
        self.settled += 1

    async def settle_now(self) -> None:
        """Take what is owed now (flush, close)."""
        while True:
            await self._later.now()
            with self._lock:
                if not self._scheduled:
                    return
            await asyncio.sleep(0)  # owed from another thread: its _schedule is queued here

    async def cancel(self) -> None:
        """Closing: drop the debts (a unit too many costs one empty claim)."""
        with self._lock:
            self._owed.clear()
            self._scheduled = False
        await self._later.cancel()
