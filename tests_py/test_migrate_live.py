"""A migration applied while workers run does not break them (issue 5, item 4)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import psycopg

import queuert
from queuert import JobContext, aio
from queuert.migrate import migrate, resource_dirs


async def test_migrate_while_workers_run(dsn: str, tmp_path: Path) -> None:
    sql_dir, migrations_dir = resource_dirs()
    # A future release: every landed migration plus a new one that builds an
    # index on the job table (it takes a SHARE lock: workers must just wait).
    future = tmp_path / "migrations"
    shutil.copytree(migrations_dir, future)
    (future / "9001_live_test_index.sql").write_text(
        "CREATE INDEX job_live_test_idx ON {{ schema }}.job (completed_at);\n"
    )

    staged = queuert.Worker(dsn, concurrency=8, poll_interval=0.2, reap_interval=0.5)
    atomic = queuert.Worker(dsn, mode="atomic", concurrency=4, poll_interval=0.2)

    for worker in (staged, atomic):
        @worker.handler("live")
        async def live(job: JobContext[Any]) -> Any:
            await asyncio.sleep(0.002)
            return job.input

    n_batches, per_batch = 10, 100
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        tasks = [asyncio.create_task(w.run_async()) for w in (staged, atomic)]
        try:
            for i in range(n_batches):
                await aio.start_chains(
                    conn, [queuert.ChainSpec("live", i * per_batch + k) for k in range(per_batch)]
                )
                # re-apply the engine (CREATE OR REPLACE of every function) mid-run,
                # and once, apply a brand-new migration
                if i % 3 == 1:
                    # (after 9001 landed, an older package refuses: use the new one)
                    dirs = future if i > 5 else migrations_dir
                    assert await asyncio.to_thread(
                        migrate, dsn, migrations_dir=dirs, sql_dir=sql_dir
                    ) == []
                if i == 5:
                    applied = await asyncio.to_thread(
                        migrate, dsn, migrations_dir=future, sql_dir=sql_dir
                    )
                    assert applied == ["9001_live_test_index"]
                await asyncio.sleep(0.05)
            total = n_batches * per_batch
            for _ in range(300):
                row = await (await conn.execute(
                    "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FROM queuert.job"
                )).fetchone()
                assert row is not None
                if row[0] == total:
                    break
                await asyncio.sleep(0.1)
            assert row == (total, total)
            errors = await (await conn.execute(
                "SELECT count(*) FROM queuert.job WHERE last_attempt_error IS NOT NULL"
            )).fetchone()
            assert errors == (0,)  # no attempt failed because of the migration
            assert await (await conn.execute(
                "SELECT to_regclass('queuert.job_live_test_idx') IS NOT NULL"
            )).fetchone() == (True,)
        finally:
            for w in (staged, atomic):
                w.stop()
            await asyncio.gather(*tasks)
    assert staged.stats.lost == atomic.stats.lost == 0
    assert staged.stats.completed + atomic.stats.completed == total
