"""Runs the maintenance services (renewal, reaping, due-time polling) on
one shared session: each says when it is next due, the runner sleeps until
the earliest (or a wake-up) and lets each do what is due. A lost
connection is reopened with capped backoff."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from queuert._worker.store import Session

logger = logging.getLogger("queuert.worker")


class Service(Protocol):
    def next_at(self, now: float) -> float | None:
        """When the service is next due (monotonic seconds), None: not now."""
        ...

    async def run_due(self, session: Session, now: float) -> None:
        """Do what is due at ``now`` (nothing if nothing is)."""
        ...


class Maintenance:
    """A Looper over ``services``."""

    def __init__(
        self,
        services: Sequence[Service],
        open_session: Callable[[], Awaitable[Session]],
        wake: asyncio.Event,
        *,
        reconnect_max: float,
        worker_id: str,
    ) -> None:
        self.services = list(services)
        self.open_session = open_session
        self.wake = wake
        self.reconnect_max = reconnect_max
        self.worker_id = worker_id
        self.session: Session | None = None
        self.stopped = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.main(), name="queuert-maintenance")

    async def stop(self) -> None:
        self.stopped = True
        self.wake.set()
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass
        if self.session is not None:
            await self.session.close()

    async def main(self) -> None:
        delay = 0.05
        while not self.stopped:
            now = time.monotonic()
            deadlines = [t for t in (s.next_at(now) for s in self.services) if t is not None]
            first = min(deadlines) if deadlines else None
            if first is None or first > now:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), None if first is None else first - now)
                except asyncio.TimeoutError:
                    pass
                if self.stopped:
                    return
            try:
                session = self.session
                if session is None or session.closed:
                    session = self.session = await self.open_session()
                now = time.monotonic()
                for service in self.services:
                    await service.run_due(session, now)
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopped:
                    return
                logger.warning("maintenance connection error: %s; retrying", exc, extra={"worker_id": self.worker_id})
                if self.session is not None:
                    await self.session.close()
                self.session = None
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.reconnect_max)
