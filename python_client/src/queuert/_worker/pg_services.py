"""The worker's services that run on PostgreSQL connections of their own,
beside maintenance's shared session: the schedule ticker for the handled
types (``schedules``) and the pruner (``prune_after``). Each reconnects by
itself; ``run.py`` starts them after maintenance and stops them after it.
``on_fired`` and ``notify_setting`` go to the ticker (schedule_ticker.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from queuert._admin_records import FiredTick

import psycopg

from queuert._worker.looper import Looper
from queuert._worker.pruner import Pruner
from queuert._worker.schedule_ticker import ScheduleTicker
from queuert._worker.settings import Settings


def _connect(settings: Settings, purpose: str) -> Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]:
    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            settings.conninfo,
            autocommit=True,
            prepare_threshold=settings.prepare_threshold,
            application_name=f"queuert-{purpose}",
        )

    return connect


def own_connection_services(
    settings: Settings,
    *,
    on_fired: Callable[[list[FiredTick]], None] | None = None,
    notify_setting: str | None = None,
) -> list[Looper]:
    s = settings
    made: list[Looper] = []
    if s.schedules:
        made.append(ScheduleTicker(_connect(s, "schedules"), schema=s.schema, type_names=s.type_names,
                                   reconnect_max=s.reconnect_max, on_fired=on_fired,
                                   notify_setting=notify_setting))
    if s.prune_after is not None:
        made.append(Pruner(_connect(s, "prune"), schema=s.schema, older_than=s.prune_after,
                           failed_older_than=s.prune_failed_after, interval=s.prune_interval,
                           reconnect_max=s.reconnect_max))
    return made
