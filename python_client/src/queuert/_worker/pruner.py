"""The pruner: a worker-side service that runs ``prune`` every ``interval``
seconds, one batch per transaction until a batch comes back short, with
``pause`` seconds between batches.

Each batch first takes a transaction-scoped advisory lock without waiting
(``pg_try_advisory_xact_lock``): with many workers pruning, one batch runs
at a time and the others skip their round. Depends only on a connection
factory, the schema name and its settings; ``start()`` / ``await stop()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .. import _statements as sql
from .._admin_records import PruneResult
from .._schema_name import validate_schema_name

__all__ = ["Pruner"]

logger = logging.getLogger("queuert.prune")

Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]

#: advisory lock key space: (this, hashtext(schema))
_LOCK_CLASS = 0x71756570  # "quep"


class Pruner:
    def __init__(
        self,
        connect: Connect,
        *,
        schema: str = "queuert",
        older_than: timedelta,
        interval: float = 300.0,
        batch_size: int = 1000,
        failed_older_than: timedelta | None = None,
        pause: float = 0.05,
        reconnect_max: float = 5.0,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise ValueError("older_than must be a timedelta of at least 0")
        s = validate_schema_name(schema)
        self._connect = connect
        self._schema = s
        self._interval = interval
        self._reconnect_max = reconnect_max
        self._params = {"older_than": older_than, "batch_size": batch_size,
                        "failed_older_than": failed_older_than}
        self._batch_size = batch_size
        self._pause = pause
        self._q_prune = sql.prune(s)
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self.pruned_chains = 0
        self.pruned_jobs = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="queuert-pruner")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self._close()

    async def prune_batch(self) -> PruneResult | None:
        """One batch in its own transaction; None when another pruner holds
        the lock."""
        conn = await self._connection()
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, self._schema)
            )
            row = await cur.fetchone()
            if row is None or not row[0]:
                return None
            dcur = conn.cursor(row_factory=dict_row)
            await dcur.execute(self._q_prune, self._params)
            got = await dcur.fetchone()
        assert got is not None
        result = PruneResult(chains=got["chains"], jobs=got["jobs"])
        self.pruned_chains += result.chains
        self.pruned_jobs += result.jobs
        return result

    async def prune_round(self) -> PruneResult:
        """Batches until one comes back short (or another pruner is busy)."""
        chains = jobs = 0
        while True:
            batch = await self.prune_batch()
            if batch is None:
                break
            chains += batch.chains
            jobs += batch.jobs
            if batch.chains < self._batch_size:
                break
            await asyncio.sleep(self._pause)  # room for the worker's own commits
        return PruneResult(chains=chains, jobs=jobs)

    async def _run(self) -> None:
        delay = 0.05
        while True:
            try:
                done = await self.prune_round()
                if done.chains:
                    logger.info("pruned %d chains (%d jobs)", done.chains, done.jobs)
                wait = self._interval
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("pruner: %s; retrying in %.2fs", exc, delay)
                await self._close()
                wait = delay
                delay = min(delay * 2, self._reconnect_max)
            await asyncio.sleep(wait)

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
