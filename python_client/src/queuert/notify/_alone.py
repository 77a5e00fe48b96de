"""Whether a broker notifier's subscription is the only one listening for
``job_ready``: then a wake budget has nobody to arbitrate between, and a
woken worker claims at once instead of waiting a broker round trip for its
unit (the unit is still taken, in the background, so the budget stays true
for workers that join later).

The count comes from the broker (an adapter's ``_count_listeners``, e.g.
Redis's ``PUBSUB NUMSUB``), is fetched on the notifier's I/O loop in the
background when a take finds it older than ``refresh_after`` seconds, and is
trusted for ``trust_for`` seconds. A worker that joins meanwhile costs at most
a few empty claims (a hint too many) until the next count; a count never
fetched, failed or forgotten (a reconnection, a subscriber coming or going)
means "not alone": every take goes to the broker, as without this.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

__all__ = ["COUNT_AFTER", "ListenerCount"]

#: seconds a background count waits before it starts: the hint that asked for
#: it is going out or waking a worker now, and a count run beside that (a
#: broker round trip, a NATS roll call every listener answers on its loop)
#: lengthened it; the tail of a wake-up after a quiet second (benchmarks/
#: README.md, "Eighth pass")
COUNT_AFTER = 0.02


class _Handed:
    """A lone listener's take handed to the I/O loop, not started yet."""


def _ignore(taken: bool) -> None:
    """settled() of a caller that keeps no count."""

logger = logging.getLogger("queuert.notify")


class ListenerCount:
    """The broker-wide count of ``job_ready`` subscriptions, cached."""

    def __init__(
        self,
        count: Callable[[], Awaitable[int | None]],
        loop: Callable[[], asyncio.AbstractEventLoop],
        *,
        refresh_after: float = 1.0,
        trust_for: float = 5.0,
        timeout: float = 1.0,
    ) -> None:
        self._count = count
        self._loop = loop
        self.refresh_after = refresh_after
        self.trust_for = trust_for
        self.timeout = timeout
        self.value: int | None = None
        self.at = float("-inf")  # monotonic time of the count
        self._generation = 0  # bumped by forget(): a count in flight is stale
        self._refreshing = False

    def alone(self) -> bool:
        """Exactly one subscription, as of a recent count (any thread). A
        stale count schedules a new one and still answers from the old."""
        return self.recent(self.trust_for) == 1

    def recent(self, max_age: float) -> int | None:
        """The count if it is younger than ``max_age`` seconds, else None
        (any thread); a count older than ``refresh_after`` is renewed in the
        background."""
        now = time.monotonic()
        if now - self.at >= self.refresh_after and not self._refreshing:
            self._refreshing = True
            try:
                self._loop().call_soon_threadsafe(self._start_soon)
            except RuntimeError:  # the loop is closing
                self._refreshing = False
        return self.value if now - self.at < max_age else None

    def forget(self) -> None:
        """Subscriptions changed (ours or the connection): count again."""
        self._generation += 1
        self.value, self.at = None, float("-inf")

    def _start_soon(self) -> None:
        # not at once: the take that asked is a wake-up, and its claim runs now
        asyncio.get_running_loop().call_later(COUNT_AFTER, self._start)

    def _start(self) -> None:
        asyncio.get_running_loop().create_task(self._refresh(self._generation), name="queuert-notify-count")

    async def _refresh(self, generation: int) -> None:
        try:
            value = await asyncio.wait_for(self._count(), self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.debug("notify: counting listeners failed: %s", exc)
            value = None
        finally:
            self._refreshing = False
        if generation == self._generation:
            self.value, self.at = value, time.monotonic()
