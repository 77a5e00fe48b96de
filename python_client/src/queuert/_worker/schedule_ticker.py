"""The schedule ticker: a worker-side service that starts the chains of due
schedule ticks (``fire_schedules``) for the types its worker handles.

It sleeps until the next tick of those types (``next_schedule_at``, read
with the server's clock), and at most ``max_sleep`` seconds, so a schedule
set or changed meanwhile is seen within that time. Exactly one chain per
tick is the engine's guarantee (a row lock per schedule, SKIP LOCKED), so
every worker may run a ticker. Depends only on a connection factory, the
schema name and its settings; ``start()`` / ``await stop()``.

``on_fired`` hears of the ticks each committed round fired (the worker
publishes their chains' types through its notifier). ``notify_setting``:
``queuert.notify`` for the firing transaction (``SET LOCAL``, so it holds
behind PgBouncer too); the worker passes ``none`` when its notifier, not the
engine, carries the news.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from psycopg.rows import dict_row

from .. import _statements as sql
from .._admin_records import FiredTick
from .._schema_name import validate_schema_name
from .periodic import Connect, PeriodicService

__all__ = ["ScheduleTicker"]

logger = logging.getLogger("queuert.schedules")


class ScheduleTicker(PeriodicService):
    task_name = "queuert-schedule-ticker"
    label = "schedule ticker"
    logger = logger

    def __init__(
        self,
        connect: Connect,
        *,
        schema: str = "queuert",
        type_names: Sequence[str] | None = None,
        max_sleep: float = 30.0,
        reconnect_max: float = 5.0,
        on_fired: Callable[[list[FiredTick]], None] | None = None,
        notify_setting: str | None = None,
    ) -> None:
        if max_sleep <= 0:
            raise ValueError("max_sleep must be positive")
        s = validate_schema_name(schema)
        super().__init__(connect, reconnect_max=reconnect_max)
        self._type_names = None if type_names is None else list(type_names)
        self._max_sleep = max_sleep
        self._on_fired = on_fired
        self._q_fire = sql.fire_schedules(s)
        self._set_local = None if notify_setting is None else f"SET LOCAL queuert.notify = '{notify_setting}'"
        self._q_next = sql.next_schedule_at(s) + ", clock_timestamp() AS now"
        self.fired = 0  # chains started by this ticker

    def wake(self) -> None:
        """Look at the schedules now (e.g. after set_schedule)."""
        self._wake.set()

    async def tick_once(self) -> list[FiredTick]:
        """Start the chains of every due tick now; returns them."""
        conn = await self._connection()
        cur = conn.cursor(row_factory=dict_row)
        if self._set_local is None:
            await cur.execute(self._q_fire, {"type_names": self._type_names})
            rows = await cur.fetchall()
        else:
            async with conn.transaction():
                await cur.execute(self._set_local)
                await cur.execute(self._q_fire, {"type_names": self._type_names})
                rows = await cur.fetchall()
        fired = [FiredTick.from_row(r) for r in rows]
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

    async def _round(self) -> float:
        await self.tick_once()
        # a tick due but not fired is another worker's, mid-commit
        return max(await self.seconds_to_next_tick(), 0.05)
