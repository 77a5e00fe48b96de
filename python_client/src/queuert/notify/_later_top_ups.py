"""A NATS producer's wake-budget top-ups that follow their event.

When the producer's count says one subscription listens for ``job_ready``,
that listener claims without asking for a unit (:mod:`queuert.notify._alone`),
so the event goes first. Its top-up (a JetStream KV compare-and-set) used to
follow at once, and ran in the producer, in nats-server and on the 2 cores
of this machine exactly while the woken worker claimed: 0.25-0.3 ms of a
wake-up's p50 (benchmarks/README.md, "Eighth pass"). Now it waits
``delay`` seconds, adding up with the top-ups that come meanwhile (one
compare-and-set per type per delay under a stream), and is sent before the
lone listener's owed units are taken (:mod:`queuert.notify._lone_takes`,
which wait longer), so the budget stays right.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from queuert.notify._deferred import Deferred

__all__ = ["LaterTopUps"]

logger = logging.getLogger("queuert.notify")


class LaterTopUps:
    """Top-ups owed by one notifier; every method runs on its I/O loop."""

    def __init__(
        self, top_up: Callable[[dict[str, int]], Awaitable[None]], delay: float, timeout: Callable[[], float]
    ) -> None:
        self._top_up = top_up
        self.delay = delay
        self._timeout = timeout
        self._owed: dict[str, int] = {}
        self._later = Deferred(self._send, lambda: self.delay, "queuert-notify-top-ups")
        #: top-ups that failed (their units are gone: hints)
        self.failed = 0

    @property
    def pending(self) -> bool:
        """Top-ups owed or on their way."""
        return bool(self._owed) or self._later.pending

    def add(self, ready: dict[str, int]) -> None:
        for name, n in ready.items():
            self._owed[name] = self._owed.get(name, 0) + n
        self._later.ask()

    async def _send(self) -> None:
        owed, self._owed = self._owed, {}
        if not owed:
            return
        try:
            await asyncio.wait_for(self._top_up(owed), self._timeout())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the event went out; a unit is a hint
            self.failed += 1
            logger.debug("NATS notifier: a wake budget top-up failed (%s)", exc)

    async def settle_now(self) -> None:
        """Send what is owed now (flush, close)."""
        await self._later.now()

    async def cancel(self) -> None:
        self._owed.clear()
        await self._later.cancel()
