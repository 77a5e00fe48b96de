"""The loop the worker's own-connection services share (the schedule
ticker, the pruner): one round at a time on a connection of their own,
reconnecting with a doubling delay (up to ``reconnect_max``) after a failed
round, and sleeping between rounds for as long as the round says or until
``_wake`` is set. A service supplies ``_round`` and its names."""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from queuert._worker.pg_text import close_quietly

#: An async connection factory; the service puts what it gets in autocommit.
Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]

_FIRST_RETRY = 0.05


class PeriodicService(abc.ABC):
    #: for the task's name and the log lines of failed rounds
    task_name = "queuert-periodic"
    label = "periodic service"
    logger = logging.getLogger("queuert")

    def __init__(self, connect: Connect, *, reconnect_max: float) -> None:
        self._connect = connect
        self._reconnect_max = reconnect_max
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        #: rounds finished, with or without an error (what a caller waits on
        #: to know the service has looked again since some moment)
        self.rounds = 0

    @abc.abstractmethod
    async def _round(self) -> float:
        """One round of work; returns the seconds to wait before the next."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self._close()

    async def _run(self) -> None:
        delay = _FIRST_RETRY
        while True:
            try:
                wait = await self._round()
                delay = _FIRST_RETRY
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.logger.warning("%s: %s; retrying in %.2fs", self.label, exc, delay)
                await self._close()
                wait = delay
                delay = min(delay * 2, self._reconnect_max)
            self.rounds += 1
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
        await close_quietly(conn)  # a broken connection: nothing to give back
