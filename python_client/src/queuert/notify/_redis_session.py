"""The Redis notifier's subscriber: SUBSCRIBE on a dedicated connection of
the subscribers' loop, read there, PINGed when idle (a half-open connection
otherwise stays silent forever)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from typing import Any, cast

from queuert.notify._listener import ListenSession

__all__ = ["RedisSession", "disconnect", "text"]


def text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


class RedisSession(ListenSession):
    """SUBSCRIBE on one dedicated connection, read by :meth:`run`."""

    def __init__(
        self,
        conn: Any,
        deliver: Callable[[str, str], None],
        channels: dict[str, str],
        health_interval: float,
        health_timeout: float,
    ) -> None:
        self.conn = conn
        self.channels = channels
        self.kind_of = {name: kind for kind, name in channels.items()}
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self.deliver = deliver
        self.last_read = time.monotonic()
        # SUBSCRIBE confirmations awaited by add(), by channel name
        self.confirming: dict[str, asyncio.Future[None]] = {}

    async def open(self, kinds: Collection[str]) -> None:
        await self.conn.connect()
        channels = [self.channels[k] for k in kinds]
        await self.conn.send_command("SUBSCRIBE", *channels)
        # the confirmations, one per channel, before we call it live
        for _ in channels:
            reply = await asyncio.wait_for(self.conn.read_response(), self.health_timeout)
            if not (isinstance(reply, list) and text(reply[0]) == "subscribe"):
                raise ConnectionError(f"unexpected reply to SUBSCRIBE: {reply!r}")

    async def add(self, kinds: Collection[str]) -> None:
        # live only once the server confirmed (run() reads the confirmations):
        # a PUBLISH from elsewhere may otherwise overtake the SUBSCRIBE
        channels = [self.channels[k] for k in kinds]
        loop = asyncio.get_running_loop()
        waits = [self.confirming.setdefault(ch, loop.create_future()) for ch in channels]
        await self.conn.send_command("SUBSCRIBE", *channels)
        await asyncio.wait_for(asyncio.gather(*waits), self.health_timeout)

    async def remove(self, kinds: Collection[str]) -> None:
        await self.conn.send_command("UNSUBSCRIBE", *[self.channels[k] for k in kinds])

    async def run(self) -> None:
        watch = asyncio.get_running_loop().create_task(self._watch(), name="queuert-redis-ping")
        try:
            while True:
                reply = cast(list[Any], await self.conn.read_response())
                self.last_read = time.monotonic()
                what = text(reply[0])
                if what == "message":
                    kind = self.kind_of.get(text(reply[1]))
                    if kind is not None:
                        self.deliver(kind, text(reply[2]))
                elif what == "subscribe":
                    waiter = self.confirming.pop(text(reply[1]), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
                if watch.done():
                    watch.result()
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)

    async def _watch(self) -> None:
        """PING when idle; a connection that does not answer is closed, which
        ends run()'s read with an error."""
        while True:
            idle = time.monotonic() - self.last_read
            if idle < self.health_interval:
                await asyncio.sleep(self.health_interval - idle)
                continue
            sent = time.monotonic()
            await self.conn.send_command("PING")
            await asyncio.sleep(self.health_timeout)
            if self.last_read < sent:
                await disconnect(self.conn)
                raise ConnectionError(f"no answer to PING within {self.health_timeout}s (half-open connection?)")

    async def close(self) -> None:
        await disconnect(self.conn)


async def disconnect(conn: Any) -> None:
    try:
        await conn.disconnect()
    except Exception:  # already broken
        pass
