"""PostgreSQL LISTEN/NOTIFY notifier (the default).

One dedicated autocommit connection LISTENs on ``<schema>_job_ready``,
``<schema>_job_lost`` and ``<schema>_chain_completed``. It is never used for
queries (a LISTEN shared with queries delays notifications behind them).

Publishing is a no-op: the engine calls ``pg_notify`` inside its own
functions, and PostgreSQL delivers those only when the transaction commits.
It keeps no wake budgets (a NOTIFY carries no count): every listener of a
type wakes, and SKIP LOCKED gives the job to one claim.

The connection is watched: after ``health_interval`` seconds without traffic it
runs ``SELECT 1`` and gives it ``health_timeout`` seconds to answer (a
half-open connection, which drops bytes without an error, then fails instead
of staying silent forever), and any error closes it and reconnects with capped exponential
backoff. Every (re)connection delivers a ``resync`` event, because
notifications sent while nobody listened are gone.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable

import psycopg

from queuert.migrate import validate_schema_name
from queuert.notify.base import Notifier, NotifyEvent, ReadyTypes, Subscription

__all__ = ["PostgresNotifier"]

logger = logging.getLogger("queuert.notify")

_KIND_SUFFIXES = ("job_ready", "job_lost", "chain_completed")


class PostgresNotifier(Notifier):
    """LISTEN on the engine's channels over one dedicated connection."""

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "queuert",
        health_interval: float = 30.0,
        health_timeout: float = 10.0,
        reconnect_initial: float = 0.05,
        reconnect_max: float = 5.0,
    ) -> None:
        super().__init__()
        self.conninfo = conninfo
        self.schema = validate_schema_name(schema)
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        self._channels = {f"{self.schema}_{k}": k for k in _KIND_SUFFIXES}
        self._listening: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._first_attempt: asyncio.Event | None = None
        self._conn: psycopg.AsyncConnection[object] | None = None
        #: number of successful (re)connections, for observability and tests
        self.connections = 0

    @property
    def listen_pid(self) -> int | None:
        """Backend pid of the LISTEN connection while it is up."""
        conn = self._conn
        if conn is None or conn.closed:
            return None
        return conn.info.backend_pid

    # publishing: the engine's own pg_notify already does it at commit
    async def publish_job_ready(self, type_names: ReadyTypes) -> None:
        return None

    async def publish_chain_completed(self, chain_ids: Iterable[str]) -> None:
        return None

    async def publish_job_lost(self, job_ids: Iterable[str]) -> None:
        return None

    def publish_nowait(self, ready: ReadyTypes, chain_ids: Iterable[str], job_ids: Iterable[str]) -> bool:
        # nothing to hand over: a sync hooks block needs no event loop for it
        return True

    def _hand_over_ready(self, ready: dict[str, int]) -> bool:
        return True  # publishes nothing (publish_nowait without its frame)

    def _wanted(self) -> dict[str, str]:
        """The channels the current subscribers need (each kind's channel is
        LISTENed only when someone wants it: a worker does not want every
        chain_completed notification delivered to it)."""
        kinds: set[str] = set()
        for sub in self._subscriptions:
            kinds |= set(_KIND_SUFFIXES) if sub.kinds is None else set(sub.kinds)
        return {ch: k for ch, k in self._channels.items() if k in kinds}

    async def _subscribed(self, sub: Subscription) -> None:
        wanted = self._wanted()
        if self._task is not None and not self._task.done() and set(wanted) - set(self._listening):
            await self._stop()  # restart with the larger channel set
        if self._task is None or self._task.done():
            self._first_attempt = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="queuert-listen"
            )
        assert self._first_attempt is not None
        await self._first_attempt.wait()

    async def _unsubscribed(self, sub: Subscription) -> None:
        if not self._subscriptions:
            await self._stop()

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def close(self) -> None:
        await super().close()
        await self._stop()

    async def _run(self) -> None:
        delay = self.reconnect_initial
        while True:
            conn: psycopg.AsyncConnection[object] | None = None
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, application_name="queuert-listen"
                )
                channels = self._listening = self._wanted()
                for channel in channels:
                    await conn.execute(f"LISTEN {channel}")
                self._conn = conn
                self.connections += 1
                delay = self.reconnect_initial
                assert self._first_attempt is not None
                self._first_attempt.set()
                self._dispatch(NotifyEvent("resync", ""))
                while True:
                    async for n in conn.notifies(timeout=self.health_interval):
                        kind = channels.get(n.channel)
                        if kind is not None:
                            self._dispatch(NotifyEvent(kind, n.payload))
                    try:
                        await asyncio.wait_for(conn.execute("SELECT 1"), self.health_timeout)
                    except asyncio.TimeoutError:
                        raise OSError(
                            f"no answer to the health check within {self.health_timeout}s "
                            "(half-open connection?)"
                        ) from None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning(
                    "LISTEN connection lost (%s); reconnecting in %.2fs",
                    exc,
                    delay,
                    extra={"schema": self.schema},
                )
                if self._first_attempt is not None:
                    self._first_attempt.set()
            finally:
                self._conn = None
                if conn is not None:
                    try:
                        await conn.close()
                    except Exception:
                        pass
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.reconnect_max)
