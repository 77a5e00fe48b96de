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
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        #: top-ups that failed (their units are gone: hints)
        self.failed = 0

    def add(self, ready: dict[str, int]) -> None:
        for name, n in ready.items():
            self._owed[name] = self._owed.get(name, 0) + n
        if self._timer is None and self._task is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._start)

    def _start(self) -> None:
        self._timer = None
        self._task = asyncio.get_running_loop().create_task(self._send(), name="queuert-notify-top-ups")

    async def _send(self) -> None:
        try:
            while self._owed:
                owed, self._owed = self._owed, {}
                try:
                    await asyncio.wait_for(self._top_up(owed), self._timeout())
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the event went out; a unit is a hint
                    self.failed += 1
                    logger.debug("NATS notifier: a wake budget top-up failed (%s)", exc)
        finally:
            self._task = None

    async def settle_now(self) -> None:
        """Send what is owed now (flush, close)."""
        while True:
            task = self._task
            if task is not None:
                await asyncio.shield(task)
                continue
            timer, self._timer = self._timer, None
            if timer is None:
                return
            timer.cancel()
            self._start()

    async def cancel(self) -> None:
        self._owed.clear()
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
