"""The pruner: a worker-side service that runs ``prune`` every ``interval``
seconds, one batch per transaction until a batch comes back short. Between
batches it rests at least three times as long as the batch took (and at
least ``pause``), so a large backlog is deleted using at most about a
quarter of one backend's time, beside the worker's own claims and commits.

Each batch first takes a transaction-scoped advisory lock without waiting
(``pg_try_advisory_xact_lock``): with many workers pruning, one batch runs
at a time and the others skip their round. Depends only on a connection
factory, the schema name and its settings; ``start()`` / ``await stop()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from psycopg.rows import dict_row

from .. import _statements as sql
from .._admin_records import PruneResult
from .._schema_name import validate_schema_name
from .periodic import Connect, PeriodicService

__all__ = ["Pruner"]

logger = logging.getLogger("queuert.prune")

#: rest between batches, as a multiple of the batch's own time
_REST_PER_BUSY = 3.0

#: advisory lock key space: (this, hashtext(schema))
_LOCK_CLASS = 0x71756570  # "quep"


class Pruner(PeriodicService):
    task_name = "queuert-pruner"
    label = "pruner"
    logger = logger

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
        super().__init__(connect, reconnect_max=reconnect_max)
        self._schema = s
        self._interval = interval
        self._params = {"older_than": older_than, "batch_size": batch_size,
                        "failed_older_than": failed_older_than}
        self._batch_size = batch_size
        self._pause = pause
        self._q_prune = sql.prune(s)
        self.pruned_chains = 0
        self.pruned_jobs = 0

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
            began = time.monotonic()
            batch = await self.prune_batch()
            if batch is None:
                break
            chains += batch.chains
            jobs += batch.jobs
            if batch.chains < self._batch_size:
                break
            # room for the worker's own claims and commits
            await asyncio.sleep(max(self._pause, (time.monotonic() - began) * _REST_PER_BUSY))
        return PruneResult(chains=chains, jobs=jobs)

    async def _round(self) -> float:
        done = await self.prune_round()
        if done.chains:
            logger.info("pruned %d chains (%d jobs)", done.chains, done.jobs)
        return self._interval
