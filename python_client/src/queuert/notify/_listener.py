"""The one broker subscription a broker notifier shares among all its
subscribers: it follows the union of the event kinds they want, reconnects
with capped exponential backoff and sends ``resync`` after every
(re)connection. Lives on the notifier's I/O loop."""

from __future__ import annotations

import abc
import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Collection

from queuert.notify._iothread import quietly
from queuert.notify.base import NotifyEvent

__all__ = ["ListenSession", "SharedSubscription"]

logger = logging.getLogger("queuert.notify")


class ListenSession(abc.ABC):
    """One live broker subscription (made by an adapter's ``_listen``)."""

    @abc.abstractmethod
    async def add(self, kinds: Collection[str]) -> None:
        """Also subscribe to these kinds' channels, on the live connection;
        return once the broker confirmed (run() is reading meanwhile)."""

    @abc.abstractmethod
    async def remove(self, kinds: Collection[str]) -> None:
        """Stop receiving these kinds."""

    @abc.abstractmethod
    async def run(self) -> None:
        """Receive until the connection is lost: then raise (never return)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the subscription (quietly: the connection may be gone)."""


Deliver = Callable[[str, str], None]


class SharedSubscription:
    """``wanted()``: the kinds the subscribers want now; ``open(kinds,
    deliver)``: connect and subscribe (the adapter); ``dispatch``: hand an
    event to every subscriber; ``connected()``: called per (re)connection."""

    def __init__(
        self,
        name: str,
        wanted: Callable[[], frozenset[str]],
        open: Callable[[frozenset[str], Deliver], Awaitable[ListenSession]],
        dispatch: Callable[[NotifyEvent], None],
        connected: Callable[[], None],
        reconnect_initial: float,
        reconnect_max: float,
    ) -> None:
        self.name = name
        self.wanted = wanted
        self.open = open
        self.dispatch = dispatch
        self.connected = connected
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        self.session: ListenSession | None = None
        self.live: frozenset[str] = frozenset()
        self.task: asyncio.Task[None] | None = None
        self.waiters: list[tuple[frozenset[str], asyncio.Future[str]]] = []
        self.down = False

    async def ensure(self) -> str:
        """Cover every subscriber's kinds. Returns "already" (was live, or
        extended live), "connected" (a new connection just delivered resync)
        or "failed" (the first attempt failed; reconnecting goes on)."""
        kinds = self.wanted()
        session = self.session
        if session is not None:
            missing = kinds - self.live
            if not missing:
                return "already"
            try:
                await session.add(missing)
                self.live |= missing
                return "already"
            except Exception as exc:  # the connection broke: reconnect with all kinds
                logger.warning("%s notifier: subscribing failed (%s); reconnecting", self.name, exc)
                await self.stop()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._main(), name="queuert-notify-listen")
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiters.append((kinds, waiter))
        return await waiter

    async def follow(self) -> None:
        """A subscriber left: drop what nobody wants (everything: disconnect)."""
        kinds = self.wanted()
        if not kinds:
            await self.stop()
            return
        extra = self.live - kinds
        if self.session is not None and extra:
            try:
                await self.session.remove(extra)
                self.live -= extra
            except Exception as exc:
                logger.debug("%s notifier: unsubscribing failed: %s", self.name, exc)

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._settle("failed")

    def _settle(self, state: str) -> None:
        keep = []
        for kinds, waiter in self.waiters:
            if waiter.done():
                continue
            if state == "failed" or kinds <= self.live:
                waiter.set_result(state)
            else:
                keep.append((kinds, waiter))
        self.waiters = keep

    def _deliver(self, kind: str, payload: str) -> None:
        self.dispatch(NotifyEvent(kind, payload))

    async def _main(self) -> None:
        delay = self.reconnect_initial
        while True:
            kinds = self.wanted()
            if not kinds:
                self._settle("failed")
                return
            session: ListenSession | None = None
            try:
                session = await self.open(kinds, self._deliver)
                self.session, self.live = session, kinds
                self.connected()
                delay = self.reconnect_initial
                if self.down:
                    self.down = False
                    logger.info("%s notifier: subscribed again", self.name)
                self.dispatch(NotifyEvent("resync", ""))
                self._settle("connected")
                await self._serve(session, kinds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.down:
                    self.down = True
                    logger.warning(
                        "%s notifier: subscription lost or unavailable (%s: %s); reconnecting "
                        "with backoff (workers poll meanwhile)",
                        self.name,
                        type(exc).__name__,
                        exc,
                    )
                else:
                    logger.debug("%s notifier: reconnecting failed: %s", self.name, exc)
                self._settle("failed")
            finally:
                self.session, self.live = None, frozenset()
                if session is not None:
                    await quietly(session.close())
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.reconnect_max)

    async def _serve(self, session: ListenSession, kinds: frozenset[str]) -> None:
        """Read until the connection is lost (raises). The session reads while
        kinds wanted since connecting are added (an adapter may wait for
        confirmations that run() reads)."""
        runner = asyncio.ensure_future(session.run())
        try:
            missing = self.wanted() - kinds
            if missing:
                await session.add(missing)
                self.live |= missing
                self._settle("connected")
            await runner
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        raise ConnectionError("subscription ended")
