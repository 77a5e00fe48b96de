"""Atomic slots of async and of sync handlers claim independently (both
backends): one kind finding none of its types left must not stop the other
kind's claims until the due-time poll hints again.

Before each kind had its own "nothing left to claim" marker, an async slot
that ran out of its jobs marked the shared one, and the sync-handler slots
stopped claiming with their jobs still pending: they ran only after the
due-time poll hinted a new claim. Here the jobs are all there before the
worker starts and nothing else hints (an in-process notifier that nobody
publishes to; a poll interval of an hour), so every job must be run with the
run's hint generation unchanged, i.e. without any poll's help.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from backends import Db

import queuert
from queuert.job import JobContext
from queuert.notify.inprocess import InProcessNotifier

pytestmark = pytest.mark.timeout(120)


def _start_jobs(db: Db, type_name: str, n: int) -> None:
    conn = db.connect(autocommit=True)
    try:
        for i in range(n):
            queuert.start_chain(conn, type_name, i)
    finally:
        conn.close()


async def test_async_and_sync_slots_each_claim_their_types_without_the_poll(db: Db) -> None:
    dsn = db.target if db.name == "postgres" else f"sqlite:///{db.target}"
    worker = queuert.Worker(dsn, mode="atomic", concurrency=1, notifier=InProcessNotifier(), poll_interval=3600)
    ran: dict[str, int] = {"async": 0, "sync": 0}

    @worker.handler("quick")
    async def quick(job: JobContext[Any]) -> None:
        ran["async"] += 1

    @worker.handler("blocking")
    def blocking(job: JobContext[Any]) -> None:  # sync: the slot's thread
        assert threading.current_thread() is not threading.main_thread()
        ran["sync"] += 1

    await asyncio.to_thread(_start_jobs, db, "quick", 40)
    await asyncio.to_thread(_start_jobs, db, "blocking", 10)
    task = asyncio.create_task(worker.run_async())
    try:
        await worker.wait_started()
        run = worker._run
        assert run is not None
        hints_at_start = run.wakeup.hint_gen
        # up to 60 s (50 trivial jobs take well under a second; the rest is
        # room for a loaded machine): a sync slot held back waits for the hour's poll
        for _ in range(3000):
            if worker.stats.completed == 50:
                break
            await asyncio.sleep(0.02)
        assert ran == {"async": 40, "sync": 10}, "every job of both kinds ran"
        assert run.wakeup.hint_gen == hints_at_start, "no due-time poll was needed to claim them"
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
