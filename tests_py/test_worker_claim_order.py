"""A staged worker starts the jobs it holds in the engine's claim order
(priority, scheduled_at, seq), whichever claim brought them: with two flush
lanes, the answer of a later claim can arrive before an earlier one's."""

from __future__ import annotations

import asyncio
from typing import Any

import queuert
from queuert._worker.run import Run
from queuert.job import JobContext


async def test_held_jobs_start_in_claim_order_whatever_order_their_claims_arrived(aconn: Any, dsn: str) -> None:
    await queuert.aio.start_chains(aconn, [queuert.ChainSpec("ordered", i) for i in range(7)])
    await aconn.commit()
    worker = queuert.Worker(dsn, concurrency=1, worker_id="w-order")
    started: list[int] = []
    gate = asyncio.Event()

    @worker.handler("ordered")
    async def ordered(job: JobContext[Any]) -> None:
        started.append(job.input)
        if job.input == 0:
            await gate.wait()  # holds the only slot while the later claims arrive

    run = Run(worker._settings(), worker._handlers, worker.stats)
    # three real claims through the worker's store: job 0, then 1-3, then 4-6
    session = await run.store.open("maintenance")
    try:
        first, earlier, later = [await session.claim(n) for n in (1, 3, 3)]
    finally:
        await session.close()
    assert [r[5] for r in first + earlier + later] == list(range(7))

    dispatcher = run.build_staged()
    try:
        dispatcher.take_claimed(first)  # job 0 takes the only slot
        dispatcher.take_claimed(later)  # the later claim's answer arrives first ...
        dispatcher.take_claimed(earlier)  # ... then the earlier one's
        assert started == [0]
        assert len(dispatcher.held) == 6
        gate.set()
        while len(started) < 7:
            await asyncio.sleep(0.01)
            dispatcher.start_held()  # what the dispatcher's loop does when a slot frees
        assert started == [0, 1, 2, 3, 4, 5, 6]
    finally:
        dispatcher.dispatch.shutdown()
