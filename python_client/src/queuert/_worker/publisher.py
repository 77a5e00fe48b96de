"""After-commit notifications of a worker run, batched.

Acknowledgements report the job types they made pending (with how many
jobs of each: a notifier with wake budgets lets that many idle workers wake)
and the chains they completed; reaping reports the jobs it took from dead
workers. The publisher coalesces what arrives within ``linger`` seconds (and
while a send is in flight) and sends it in one announcement on its own
connection, and/or through a non-PostgreSQL notifier. Completed chains alone
(no job made pending, nothing lost) wait longer while announcements follow
each other: at most one such announcement per ``coalesce`` seconds, so a
worker acknowledging job after job (atomic at concurrency 1: a commit every
millisecond or so) sends one announcement per ``coalesce`` rather than one per
job, each costing a round trip and a transaction on its own connection and a
wake-up of every listening backend. A ``job_ready``, a lost job, or stopping
ends that wait at once (after ``linger``), and after a quiet spell the first
completion goes out after ``linger`` as before. Reaped jobs, chains
the schedule ticker started and what an atomic handler did on ``job.conn``
go to the notifier only: the database hears of them from the engine itself,
unless the worker's notify policy turned the engine's notifications off,
and then it needs none. Hints only: a crash between the commit and the send loses the
hint, never the job (workers and ``wait_for_chain`` poll).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

from queuert._worker.store import Announcer
from queuert.notify.base import Notifier

logger = logging.getLogger("queuert.worker")


class Publisher:
    """A Looper. ``open_announcer`` (None: no database announcements)
    connects, retrying as the run allows; ``notifier``: a non-PostgreSQL
    notifier to publish through as well."""

    linger = 0.002
    # completed chains alone, sent back to back: one announcement per this
    coalesce = 0.010

    def __init__(
        self,
        open_announcer: Callable[[], Awaitable[Announcer]] | None,
        notifier: Notifier | None,
        *,
        worker_id: str,
    ) -> None:
        self.open_announcer = open_announcer
        self.notifier = notifier
        self.worker_id = worker_id
        self.ready: dict[str, int] = {}
        self.chains: list[str] = []
        # for the notifier only (see add_outside)
        self.outside_ready: dict[str, int] = {}
        self.outside_chains: list[str] = []
        self.lost: list[str] = []
        self.event = asyncio.Event()
        # set when what is buffered should not wait out ``coalesce``
        self.hurry = asyncio.Event()
        self.last_sent = float("-inf")  # loop time the last send ended
        self.announcer: Announcer | None = None
        self.closing = False
        self.sent = 0  # announcements sent (for tests and benchmarks)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.main(), name="queuert-publisher")

    def add(self, ready: Mapping[str, int] | Iterable[str], chains: Iterable[str]) -> None:
        """What a committed acknowledgement implies (loop thread): job types
        made pending (``{type: jobs}``, or names counting one each) and
        chains completed."""
        if ready:
            _count_into(self.ready, ready)
        self.chains.extend(chains)
        if self.ready or self.chains:
            if self.ready:
                self.hurry.set()
            self.event.set()

    def add_reaped(self, ready: Mapping[str, int], lost: Iterable[str]) -> None:
        """Jobs a committed reap took from their workers (``lost``: their
        ids) and the types of those it made pending again (loop thread)."""
        self.add_outside(ready, (), lost)

    def add_outside(
        self, ready: Mapping[str, int] | Iterable[str], chains: Iterable[str], lost: Iterable[str]
    ) -> None:
        """What a committed transaction whose own statements notified the
        database (unless the policy turned that off) implies, for the
        notifier only (loop thread): job types made pending, chains
        completed, running jobs taken from their workers."""
        if self.notifier is None:
            return
        _count_into(self.outside_ready, ready)
        self.outside_chains.extend(chains)
        self.lost.extend(lost)
        if self.outside_ready or self.outside_chains or self.lost:
            if self.outside_ready or self.lost:
                self.hurry.set()
            self.event.set()

    def _pending(self) -> bool:
        return bool(self.ready or self.chains or self.outside_ready or self.outside_chains or self.lost)

    def _urgent(self) -> bool:
        return bool(self.closing or self.ready or self.outside_ready or self.lost)

    async def _wait(self) -> None:
        """Lingers before a send: ``linger``, or while only completed chains
        are buffered and the last send ended less than ``coalesce`` ago,
        until ``coalesce`` after it (cut short, to ``linger``, by anything
        urgent arriving)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        until = self.last_sent + self.coalesce
        if self._urgent() or until <= now + self.linger:
            await asyncio.sleep(self.linger)
            return
        self.hurry.clear()
        if self._urgent():  # raced in before the clear
            await asyncio.sleep(self.linger)
            return
        try:
            await asyncio.wait_for(self.hurry.wait(), until - now)
        except asyncio.TimeoutError:
            return
        if not self.closing:
            await asyncio.sleep(min(self.linger, max(until - loop.time(), 0.0)))

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.event.wait()
            if not self.closing:
                await self._wait()
            self.event.clear()
            self.hurry.clear()
            ready, self.ready = self.ready, {}
            chains, self.chains = self.chains, []
            outside, self.outside_ready = self.outside_ready, {}
            outside_chains, self.outside_chains = self.outside_chains, []
            lost, self.lost = self.lost, []
            if ready or chains:
                await self.send(ready, chains)
            if outside or outside_chains or lost:
                await self.send_outside(outside, outside_chains, lost)
            self.last_sent = loop.time()
            if self.closing and not self._pending():
                return

    async def send(self, ready: dict[str, int], chains: list[str]) -> None:
        if self.open_announcer is not None:
            for attempt in range(2):
                try:
                    if self.announcer is None or self.announcer.closed:
                        self.announcer = await self.open_announcer()
                    await self.announcer.announce(sorted(ready), chains)
                    self.sent += 1
                    break
                except Exception as exc:
                    if self.announcer is not None:
                        await self.announcer.close()
                    self.announcer = None
                    if attempt or self.closing:
                        logger.warning(
                            "publishing %d notification(s) failed: %s (hints only: listeners poll)",
                            len(ready) + len(chains),
                            exc,
                            extra={"worker_id": self.worker_id},
                        )
                        break
        notifier = self.notifier
        if notifier is not None:
            try:
                if ready:
                    await notifier.publish_job_ready(ready)
                if chains:
                    await notifier.publish_chain_completed(chains)
            except Exception:
                logger.exception("publishing notifications failed")

    async def send_outside(self, ready: dict[str, int], chains: list[str], lost: list[str]) -> None:
        notifier = self.notifier
        if notifier is None:
            return
        try:
            if lost:
                await notifier.publish_job_lost(lost)
            if ready:
                await notifier.publish_job_ready(ready)
            if chains:
                await notifier.publish_chain_completed(chains)
        except Exception:
            logger.exception("publishing notifications failed")

    async def stop(self) -> None:
        """Send what is buffered, then close the connection."""
        self.closing = True
        self.hurry.set()
        self.event.set()
        if self.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.task), 5.0)
            except BaseException:
                self.task.cancel()
        if self.announcer is not None:
            await self.announcer.close()


def _count_into(counts: dict[str, int], ready: Mapping[str, int] | Iterable[str]) -> None:
    if isinstance(ready, Mapping):
        for name, n in ready.items():
            counts[name] = counts.get(name, 0) + n
    else:
        for name in ready:
            counts[name] = counts.get(name, 0) + 1
