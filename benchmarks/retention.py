"""Workload 12: retention (issue 17).

claim p50 / p99 with many completed chains retained against an empty
table: `retention_completed` (10,000,000) completed single-job chains are
written with one INSERT ... SELECT generate_series per million rows
(engine-made version 7 ids, created and completed over the last 60 days,
`chain_completed_at` set as a completion sets it; two connections at once),
then VACUUM ANALYZE, as
autovacuum would; both databases then get the same pending jobs and one
client claims them one at a time (statement time: execute + fetch; each
claim committed after), in blocks of 100 that alternate between the two
databases so the machine's load drifts over both alike.

create beside prune: in the loaded database a worker process (staged,
concurrency 10, no-op handler) drains a backlog of `retention_backlog`
pending jobs, and one client runs `start_chain` one per transaction in
blocks of `retention_block`; blocks alternate between a pruner running
(another process running the worker's Pruner service with no wait between
rounds: the old completed chains deleted 1,000 per transaction, its
0.05 s pause between batches) and none. Ratio: rate with the
pruner over rate without, median of per-round ratios.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import timedelta

import psycopg

from .common import SCHEMA, Databases, Results, Sizes, execute_parallel, percentile

NAME = "retention"

BULK = f"""
INSERT INTO {SCHEMA}.job (
    id, type_name, chain_id, chain_type_name, chain_index, input, output, status,
    attempt, scheduled_at, created_at, completed_at, completed_by, chain_completed_at
)
SELECT u.id, 'old', u.id, 'old', 0, jsonb_build_object('n', u.g), '{{"ok": true}}'::jsonb,
    'completed', 1, u.t, u.t, u.t + interval '1 second', 'old-worker', u.t + interval '1 second'
FROM (
    SELECT g, {SCHEMA}._new_job_id() AS id,
        now() - interval '60 days' + (g::float8 / %(total)s) * interval '59 days' AS t
    FROM generate_series(%(first)s, %(last)s) AS g
) AS u
"""

BACKLOG = f"""
INSERT INTO {SCHEMA}.job (id, type_name, chain_id, chain_type_name, chain_index, input, status, scheduled_at)
SELECT u.id, 'bench', u.id, 'bench', 0, jsonb_build_object('n', g), 'pending', now()
FROM (SELECT g, {SCHEMA}._new_job_id() AS id FROM generate_series(1, %(n)s) AS g) AS u
"""

START = f"SELECT id FROM {SCHEMA}.start_chain(type_name => 'bench', input => %s::jsonb)"
CLAIM = f"SELECT * FROM {SCHEMA}.claim(worker_id => %s, max_jobs => 1)"


def _build(dsn: str, completed: int, pending: int) -> float:
    t = time.perf_counter()
    step = 1_000_000
    execute_parallel(dsn, [
        (BULK, {"first": first, "last": min(first + step - 1, completed), "total": completed})
        for first in range(1, completed + 1, step)
    ])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(BACKLOG, {"n": pending})
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.job")
        conn.execute("CHECKPOINT")  # the build's dirty pages are not the claims' to write
    return time.perf_counter() - t


def _create_block(conn: psycopg.Connection, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        conn.execute(START, ('{"n": %d}' % i,)).fetchall()
    return n / (time.perf_counter() - t)


def _spawn(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(("ready", "pruning")):
        proc.kill()
        raise RuntimeError(f"{args[0]} did not start: {line!r}")
    return proc


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return out


def _create_beside_prune(dsn: str, sizes: Sizes, results: Results) -> None:
    worker = _spawn("benchmarks.worker_proc", dsn, "staged", "10", "noop")
    assert worker.stdin is not None
    worker.stdin.write("go\n")
    worker.stdin.flush()
    ratios, off_rates, on_rates, pruned = [], [], [], 0
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            _create_block(conn, 20)  # warm the plan cache
            for r in range(sizes.retention_rounds):
                got: dict[str, float] = {}
                for arm in (("off", "on") if r % 2 == 0 else ("on", "off")):
                    if arm == "on":
                        pruner = _spawn("benchmarks.retention", "prune", dsn)
                        got[arm] = _create_block(conn, sizes.retention_block)
                        pruned += int(_stop(pruner).split()[-1] or 0)
                    else:
                        got[arm] = _create_block(conn, sizes.retention_block)
                ratios.append(got["on"] / got["off"])
                off_rates.append(got["off"])
                on_rates.append(got["on"])
            left = conn.execute(f"SELECT count(*) FROM {SCHEMA}.job WHERE status = 'pending'").fetchone()
    finally:
        _stop(worker)
    results.add(NAME, "start_chain 1/tx, no pruner, worker busy", statistics.median(off_rates), "chains/s")
    results.add(NAME, "start_chain 1/tx, pruner beside the busy worker", statistics.median(on_rates), "chains/s")
    results.add(NAME, "create: pruner on / off", statistics.median(ratios), "x")
    results.note(NAME, f"create beside prune: {sizes.retention_rounds} rounds of {sizes.retention_block} starts "
                 f"per arm; the pruners deleted {pruned:,} old chains meanwhile; per-round ratios "
                 f"{min(ratios):.2f}-{max(ratios):.2f}; {left[0] if left else '?'} backlog jobs still pending "
                 "at the end (the worker was busy throughout when > 0)")


def _claims(conn: psycopg.Connection, n: int) -> list[float]:
    """Statement times (ms) of n claims of one job, each committed after."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        rows = conn.execute(CLAIM, ("bench-worker",)).fetchall()
        out.append((time.perf_counter() - t0) * 1000)
        conn.commit()
        assert len(rows) == 1
    return out


def _paired_claims(empty_dsn: str, retained_dsn: str, sizes: Sizes, results: Results) -> None:
    """Claims on both databases in alternating blocks of 100, so that the
    machine's load drifts over both alike; p50/p99 per database and
    repetition, and the ratio of the p99s."""
    with psycopg.connect(empty_dsn) as empty, psycopg.connect(retained_dsn) as retained:
        conns = {"empty": empty, "retained": retained}
        for conn in conns.values():
            _claims(conn, 5)  # warm the plan cache
        for _ in range(sizes.reps):
            got: dict[str, list[float]] = {"empty": [], "retained": []}
            for b in range(max(1, sizes.retention_claims // 100)):
                for label in (("empty", "retained") if b % 2 == 0 else ("retained", "empty")):
                    got[label] += _claims(conns[label], min(100, sizes.retention_claims))
            for label, times in got.items():
                times.sort()
                results.add(NAME, f"{label}: claim p50", percentile(times, 50), "ms", False)
                results.add(NAME, f"{label}: claim p99", percentile(times, 99), "ms", False)
            results.add(NAME, "claim p99: retained / empty",
                        percentile(got["retained"], 99) / percentile(got["empty"], 99), "x", False)
            results.add(NAME, "claim p50: retained / empty",
                        percentile(got["retained"], 50) / percentile(got["empty"], 50), "x", False)


def run_all(dbs: Databases, sizes: Sizes, results: Results) -> None:
    pending = sizes.retention_claims * sizes.reps + 1000
    with dbs.fresh("retention-empty") as empty, dbs.fresh("retention-retained") as retained:
        for label, dsn, completed in (("empty", empty, 0), ("retained", retained, sizes.retention_completed)):
            build_s = _build(dsn, completed, pending)
            results.note(NAME, f"{label}: {completed:,} completed chains + {pending:,} pending, built in "
                         f"{build_s:.1f}s (not timed)")
        _paired_claims(empty, retained, sizes, results)
        with psycopg.connect(retained, autocommit=True) as conn:
            conn.execute(BACKLOG, {"n": sizes.retention_backlog})
        _create_beside_prune(retained, sizes, results)


async def _prune_forever(dsn: str) -> None:
    """The worker's Pruner service as a worker runs it, with no wait between
    rounds: batches of 1,000, its pause between them, until SIGTERM."""
    from queuert._worker.pruner import Pruner

    pruner = Pruner(lambda: psycopg.AsyncConnection.connect(dsn), older_than=timedelta(days=1),
                    interval=0.001)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await pruner.prune_batch()
    print("pruning", flush=True)
    pruner.start()
    await stop.wait()
    await pruner.stop()
    print(pruner.pruned_chains, flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["prune"]:
        asyncio.run(_prune_forever(sys.argv[2]))
