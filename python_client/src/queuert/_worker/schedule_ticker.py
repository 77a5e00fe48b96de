"""The schedule ticker: a worker-side service that starts the chains of due
schedule ticks (``fire_schedules``) for the types its worker handles.

It sleeps until the next tick of those types (``next_schedule_at``, read
with the server's clock), and at most ``max_sleep`` seconds, so a schedule
set or changed meanwhile is seen within that time. Exactly one chain per
tick is the engine's guarantee (a row lock per schedule, SKIP LOCKED), so
every worker may run a ticker. Depends only on a connection factory, the
schema name and its settings; ``start()`` / ``await stop()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .. import _statements as sql
from .._admin_records import FiredTick
from .._schema_name import validate_schema_name

__all__ = ["ScheduleTicker"]

logger = logging.getLogger("queuert.schedules")

#: An async connection factory; the ticker puts what it gets in autocommit.
Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]


class ScheduleTicker:
    def __init__(
        self,
        connect: Connect,
        *,
        schema: str = "queuert",
        type_names: Sequence[str] | None = None,
        max_sleep: float = 30.0,
        reconnect_max: float = 5.0,
        on_fired: Callable[[list[FiredTick]], None] | None = None,
    ) -> None:
        if max_sleep <= 0:
            raise ValueError("max_sleep must be positive")
        s = validate_schema_name(schema)
        self._connect = connect
        self._type_names = None if type_names is None else list(type_names)
        self._max_sleep = max_sleep
        self._reconnect_max = reconnect_max
        self._on_fired = on_fired
        self._q_fire = sql.fire_schedules(s)
        self._q_next = sql.next_schedule_at(s) + ", clock_timestamp() AS now"
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.fired = 0  # chains started by this ticker

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="queuert-schedule-ticker")

    def wake(self) -> None:
        """Look at the schedules now (e.g. after set_schedule)."""
        self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self._close()

    async def tick_once(self) -> list[FiredTick]:
        """Start the chains of every due tick now; returns them."""
        conn = await self._connection()
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(self._q_fire, {"type_names": self._type_names})
        fired = [FiredTick.from_row(r) for r in await cur.fetchall()]
        self.fired += sum(1 for f in fired if not f.deduplicated)
        if fired and self._on_fired is not None:
            self._on_fired(fired)
        return fired

    async def seconds_to_next_tick(self) -> float:
        """Seconds until the next tick of these types, by the server's clock
        (``max_sleep`` when none); 0 when one is due."""
        conn = await self._connection()
        cur = await conn.execute(self._q_next, {"type_names": self._type_names})
        row = await cur.fetchone()
        if row is None or row[0] is None:
            return self._max_sleep
        at, now = row
        seconds: float = (at - now).total_seconds()
        return max(0.0, min(seconds, self._max_sleep))

    async def _run(self) -> None:
        delay = 0.05
        while True:
            try:
                await self.tick_once()
                wait = await self.seconds_to_next_tick()
                # a tick due but not fired is another worker's, mid-commit
                wait = max(wait, 0.05)
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("schedule ticker: %s; retrying in %.2fs", exc, delay)
                await self._close()
                wait = delay
                delay = min(delay * 2, self._reconnect_max)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except asyncio.TimeoutError:
                pass

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            conn = await self._connect()
            await conn.set_autocommit(True)
            self._conn = conn
        return self._conn

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except Exception:  # a broken connection: nothing to give back
                pass
