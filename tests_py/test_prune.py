"""Retention from the worker side: Pruner services pruning as fast as they
can beside a busy worker delete only what nothing needs any more: a fan-in
parent still reads every blocker's output, multi-step chains go whole, and
the table empties once everything finished. The CLI's prune loops batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

import queuert
from queuert import aio
from queuert._worker.pruner import Pruner
from queuert.cli import cli
from queuert.job import JobContext


@pytest.fixture
async def admin(dsn: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


def pruner(dsn: str, **kw: Any) -> Pruner:
    kw.setdefault("older_than", timedelta(0))
    return Pruner(lambda: psycopg.AsyncConnection.connect(dsn), **kw)


async def scalar(conn: psycopg.AsyncConnection[Any], query: str) -> Any:
    row = await (await conn.execute(query)).fetchone()
    assert row is not None
    return row[0]


async def test_pruning_beside_a_busy_worker_keeps_what_is_still_needed(
    dsn: str, admin: psycopg.AsyncConnection[Any]
) -> None:
    worker = queuert.Worker(dsn, concurrency=6, poll_interval=0.1, reap_interval=0.5, grace_period=5)
    sums: dict[int, list[int]] = {}

    @worker.handler("child")
    async def child(job: JobContext[Any]) -> Any:
        return job.input * 2

    @worker.handler("parent")
    async def parent(job: JobContext[Any]) -> Any:
        sums[job.input] = sorted(b.output for b in job.blockers)
        return None

    @worker.handler("step")
    async def step(job: JobContext[Any]) -> Any:
        if job.input < 3:
            return queuert.continue_with("step", job.input + 1)
        return "done"

    # 40 fan-ins of three children each; one child of each starts late, so
    # its siblings complete (prunable by age) long before the parent runs.
    for p in range(40):
        kids = [
            (await aio.start_chain(admin, "child", p * 10 + k,
                                   schedule_after=timedelta(milliseconds=400) if k == 2 else None)).chain_id
            for k in range(3)
        ]
        await aio.start_chain(admin, "parent", p, blockers=kids)
    await aio.start_chains(admin, [queuert.ChainSpec("step", 0) for _ in range(30)])

    pruners = [pruner(dsn, interval=0.01, batch_size=7) for _ in range(2)]
    for pr in pruners:
        pr.start()
    task = asyncio.create_task(worker.run_async())
    try:
        deadline = time.monotonic() + 90
        while await scalar(admin, "SELECT count(*) FROM queuert.job") > 0:
            assert time.monotonic() < deadline, "not everything was pruned"
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
        for pr in pruners:
            await pr.stop()
    assert sorted(sums) == list(range(40))
    assert all(sums[p] == [p * 20, p * 20 + 2, p * 20 + 4] for p in sums), "a parent lost a blocker's output"
    assert worker.stats.failed == 0
    assert sum(pr.pruned_chains for pr in pruners) == 40 * 4 + 30
    assert sum(pr.pruned_jobs for pr in pruners) == 40 * 4 + 30 * 4


async def test_one_pruner_at_a_time(dsn: str, admin: psycopg.AsyncConnection[Any]) -> None:
    await aio.start_chains(admin, [queuert.ChainSpec("t", i) for i in range(3)])
    await admin.execute("UPDATE queuert.job SET status = 'completed', chain_completed_at = now()")
    other = pruner(dsn)
    async with await psycopg.AsyncConnection.connect(dsn) as holder:
        # another pruner's batch in progress: it holds the advisory lock
        await holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext('queuert'))", (0x71756570,))
        assert await other.prune_batch() is None
        assert await scalar(admin, "SELECT count(*) FROM queuert.job") == 3
        await holder.rollback()
    assert await other.prune_batch() == queuert.PruneResult(chains=3, jobs=3)
    await other.stop()


def test_cli_prune_runs_batches_until_done(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        queuert.start_chains(conn, [queuert.ChainSpec("t", i) for i in range(25)])
        conn.execute("UPDATE queuert.job SET status = 'completed', chain_completed_at = now() - interval '2 days'")
        queuert.start_chain(conn, "t", 99)
    out = CliRunner().invoke(cli, ["prune", "--older-than", "1d", "--batch-size", "10", "--dsn", dsn])
    assert out.exit_code == 0, out.output
    assert "pruned 25 chains (25 jobs)" in out.output
    out = CliRunner().invoke(cli, ["prune", "--older-than", "soon", "--dsn", dsn])
    assert out.exit_code == 2 and "not an age" in out.output
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM queuert.job").fetchone() == (1,)


async def test_a_worker_with_prune_after_prunes_what_it_finished(
    dsn: str, admin: psycopg.AsyncConnection[Any]
) -> None:
    worker = queuert.Worker(dsn, concurrency=4, poll_interval=0.2, grace_period=5,
                            prune_after=timedelta(0), prune_interval=0.05)
    worker.handler("t", lambda job: job.input)
    await aio.start_chains(admin, [queuert.ChainSpec("t", i) for i in range(50)])
    task = asyncio.create_task(worker.run_async())
    try:
        deadline = time.monotonic() + 60
        while await scalar(admin, "SELECT count(*) FROM queuert.job") > 0:
            assert time.monotonic() < deadline, "the worker never pruned"
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
    assert worker.stats.completed == 50
    with pytest.raises(ValueError, match="prune_after"):
        queuert.Worker(dsn, prune_after=timedelta(days=-1))
