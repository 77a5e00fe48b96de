"""An atomic slot's completions take two paths on PostgreSQL (issue 16 item
5): ``complete`` on a chain nothing waits on runs its single-job short path
in the engine and the slot records it from the chain id alone
(``pg_sql.read_atomic_completion``); a chain that another waits on runs the
engine's full path (dependents resolved) and, with telemetry, the slot
reads its rows into a ``Written``. ``claim`` likewise reads blockers only
for jobs that have edges. Both paths must leave the same rows, counters and
notifications."""

from __future__ import annotations

from typing import Any

import queuert
from queuert import aio
from queuert.job import JobContext

from test_worker import DB, db, eventually, fast, running  # noqa: F401 - fixture
from test_worker_notify import listening, notifications_settled


async def test_atomic_completions_of_roots_continuations_and_blocked_chains(dsn: str, db: DB) -> None:
    worker = fast(dsn, mode="atomic", concurrency=1)
    seen_blockers: dict[str, list[Any]] = {}

    @worker.handler("one")
    async def one(job: JobContext[Any]) -> Any:
        seen_blockers[str(job.chain_id)] = [(str(b.chain_id), b.output) for b in job.blockers]
        return {"n": job.input}

    @worker.handler("first")
    async def first(job: JobContext[Any]) -> Any:
        return job.continue_with("second", {"from": "first"})

    @worker.handler("second")
    async def second(job: JobContext[Any]) -> Any:
        await job.conn.execute("SELECT 1")  # the slot's connection, used
        return "second done"

    async with listening(dsn) as listener:
        plain = [c.chain_id for c in await aio.start_chains(db.conn, [queuert.ChainSpec("one", i) for i in range(5)])]
        continued = await db.start("first", None)
        blocker = await db.start("one", 100)
        waiting = await db.start("one", 200, blockers=[blocker])
        await notifications_settled(db.conn, listener)
        listener.got.clear()
        everything = [*plain, continued, blocker, waiting]
        async with running(worker):
            await eventually(
                lambda: len(listener.payloads("queuert_chain_completed")) == len(everything), timeout=30
            )
            stats = worker.stats
            assert stats.completed == len(everything) and stats.continued == 1, stats
        await notifications_settled(db.conn, listener)
    # every chain's chain_completed once, the blocked one's after its blocker's
    heard = listener.payloads("queuert_chain_completed")
    assert sorted(heard) == sorted(str(c) for c in everything)
    assert heard.index(str(blocker)) < heard.index(str(waiting))
    for chain in everything:
        assert await db.chain_status(chain) == "completed"
    # the continuation's completion marks its chain's root (not itself)
    root = await db.job(continued)
    assert root["status"] == "completed" and root["chain_completed_at"] is not None
    tail = await db.one(
        "SELECT status::text, output, chain_completed_at FROM queuert.job WHERE chain_id = %s AND chain_index = 1",
        (continued,),
    )
    assert tail is not None and tail[0] == "completed" and tail[1] == "second done" and tail[2] is None
    # the blocked job's claim read its blocker; the others had none
    assert seen_blockers[str(waiting)] == [(str(blocker), {"n": 100})]
    assert all(seen_blockers[str(c)] == [] for c in [*plain, blocker])
