"""A run's stop state and its connection retry policy.

``request_stop`` may come from any thread (``Worker.stop``) or a signal
handler; everything else here runs on the loop thread. Written only by
``request_stop``; read by the dispatchers, the atomic slots and the
reconnect loops.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from queuert._worker.store import ConnectionLost
from queuert._worker.wakeup import Wakeup

logger = logging.getLogger("queuert.worker")

T = TypeVar("T")


class Lifecycle:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        wakeup: Wakeup,
        *,
        grace_period: float,
        reconnect_max: float,
        worker_id: str,
    ) -> None:
        self.loop = loop
        self.wakeup = wakeup
        self.grace_period = grace_period
        self.reconnect_max = reconnect_max
        self.worker_id = worker_id
        self.claiming = True  # False from the first stop request on
        self.stop_requested = False
        self.immediate = False  # stop now: no grace period left
        self.grace_deadline: float | None = None  # monotonic
        self.stop_event = asyncio.Event()

    def request_stop(self, immediate: bool) -> None:
        try:
            running_loop = asyncio.get_running_loop()
        except RuntimeError:
            running_loop = None
        if running_loop is not self.loop:
            self.loop.call_soon_threadsafe(self.request_stop, immediate)
            return
        if not self.stop_requested:
            self.stop_requested = True
            self.claiming = False
            self.grace_deadline = time.monotonic() + self.grace_period
        if immediate:
            self.immediate = True
            self.grace_deadline = time.monotonic()
        self.stop_event.set()
        self.wakeup.stop()

    def on_signal(self, sig: object) -> None:
        """SIGTERM / SIGINT: stop gracefully; a second one: at once."""
        if self.stop_requested:
            logger.warning("second signal %s, stopping at once", sig, extra={"worker_id": self.worker_id})
            self.request_stop(True)
        else:
            logger.info(
                "signal %s, stopping (grace period %.1fs)",
                sig,
                self.grace_period,
                extra={"worker_id": self.worker_id},
            )
            self.request_stop(False)

    def grace_over(self) -> bool:
        return self.immediate or (self.grace_deadline is not None and time.monotonic() >= self.grace_deadline)

    async def sleep(self, seconds: float) -> None:
        """About ``seconds`` (jittered), cut short by a stop request."""
        try:
            await asyncio.wait_for(self.stop_event.wait(), seconds * random.uniform(0.5, 1.0))
        except asyncio.TimeoutError:
            pass

    async def reconnecting(self, purpose: str, opener: Callable[[], Awaitable[T]]) -> T:
        """``opener()`` until it succeeds, with capped exponential backoff.
        Gives up (ConnectionLost) at an immediate stop, or once stopping for
        connections other than the flush lanes' ("main") and the
        publisher's ("notify"), which still have outcomes to write."""
        delay = 0.05
        while True:
            try:
                return await opener()
            except ConnectionLost as exc:
                if self.immediate or (self.stop_requested and purpose not in ("main", "notify")):
                    raise
                logger.warning(
                    "cannot connect (%s): %s; retrying in %.2fs",
                    purpose,
                    exc,
                    delay,
                    extra={"worker_id": self.worker_id},
                )
                await self.sleep(delay)
                if self.immediate:
                    raise
                delay = min(delay * 2, self.reconnect_max)
