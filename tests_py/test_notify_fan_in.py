"""A fan-in's wake budget counts its jobs: when one completion makes N
dependents of one type pending, the broker's budget for the type goes up by
N (the engine's ``unblocked_types`` lists a type once per job), so N idle
workers wake and each claims one; more idle workers than that find the
budget spent and stay asleep. Real Redis (standalone and Cluster) and NATS,
through the public Worker API; the blocker is completed from outside (the
client's ``complete_chain`` in a hooks block) or by a worker (its
``complete_jobs`` acknowledgement).

With a budget of 1 for the N jobs (before), one worker woke, and the jobs'
handlers, which wait until all N run at once, never all started: the other
workers' polls are a minute away."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

import queuert
from queuert import aio
from queuert.job import JobContext
from queuert.notify.broker import BrokerNotifier

from test_notify_worker import cluster_ports, make  # noqa: F401 - fixtures (every broker)
from test_worker import DB, db, eventually, fast  # noqa: F401 - fixture
from worker_helpers import asleep, running

DEPENDENTS = 3
IDLE_WORKERS = 5


@pytest.mark.parametrize("completed_by", ["outside", "worker"])
async def test_a_fan_in_wakes_one_idle_worker_per_unblocked_job(
    make: Callable[..., BrokerNotifier], dsn: str, db: DB, completed_by: str
) -> None:
    ran: list[int] = []
    all_running = asyncio.Event()
    workers: list[queuert.Worker] = []
    for i in range(IDLE_WORKERS):
        # a slow broker answer must not read as "no budget kept" (a take that
        # fails claims by design): hint_timeout bounds the take, and the
        # client's socket timeout (send_timeout on Redis) must not cut it first
        # (a Cluster client retries a timed-out take: it spends two units)
        notifier = make(hint_timeout=30.0, send_timeout=60.0)
        # one job at a time: a worker that wakes claims one
        worker = fast(dsn, notifier=notifier, poll_interval=60, concurrency=1)

        async def part(job: JobContext[None], i: int = i) -> None:
            ran.append(i)
            if len(ran) == DEPENDENTS:
                all_running.set()
            await asyncio.wait_for(all_running.wait(), 60)  # all N at once, or none finishes

        worker.handler("part", part)
        workers.append(worker)
    # whoever completes the gate publishes the N units: a stall must not drop them
    gate_worker = fast(dsn, notifier=make(send_timeout=30.0), poll_interval=0.2)
    gate_worker.handler("gate", lambda job: "open")
    producer = make(send_timeout=30.0)

    gate = await aio.start_chain(db.conn, "gate", None)
    parts = [await aio.start_chain(db.conn, "part", None, blockers=[gate.chain_id]) for _ in range(DEPENDENTS)]
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(running(worker))
        await eventually(lambda: all(asleep(w) for w in workers), timeout=30)
        claims_before = [w.stats.claim_calls for w in workers]
        if completed_by == "outside":
            async with queuert.transaction_hooks(producer):
                async with db.conn.transaction():
                    await aio.complete_chain(db.conn, gate.chain_id, "open")
        else:
            await stack.enter_async_context(running(gate_worker))
        await asyncio.wait_for(all_running.wait(), 30)
        for p in parts:
            await aio.wait_for_chain(db.conn, p.chain_id, timeout=30, poll_interval=0.05)
        # everyone heard the event: N took a unit, the others found none
        await eventually(
            lambda: sum(w.stats.wake_hints_declined for w in workers) == IDLE_WORKERS - DEPENDENTS, timeout=30
        )
        claimed_since = [w.stats.claim_calls - n for w, n in zip(workers, claims_before)]
    assert sorted(ran) == sorted(set(ran)) and len(ran) == DEPENDENTS, "each woken worker ran one job"
    assert [w.stats.claimed for w in workers] == [1 if i in ran else 0 for i in range(IDLE_WORKERS)]
    assert [n > 0 for n in claimed_since] == [i in ran for i in range(IDLE_WORKERS)], claimed_since
    assert [w.stats.wake_hints_declined for w in workers] == [0 if i in ran else 1 for i in range(IDLE_WORKERS)]
