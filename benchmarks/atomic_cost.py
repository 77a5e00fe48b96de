"""Where an atomic worker's job goes at concurrency 1, against make bench's
own 1-per-transaction floor (issue 16 item 5):

    python -m benchmarks.atomic_cost [--rounds R] [--n N] [--dsn DSN]

Each round runs, on fresh databases, in rotated order: the floor
(``floors.claim_loop``, n jobs, 1 per transaction), the atomic worker at
concurrency 1 (``benchmarks.worker_proc``, no-op handler, n jobs) and
"plain": a plain psycopg async loop sending the worker's statements (the
previous job's SET LOCAL, complete and COMMIT with BEGIN, claim and
SAVEPOINT, one message a job; claim and complete prepared, literals rendered
by hand), i.e. the client and backend cost of the worker's SQL with no work
of queuert's own in the client. For each
it measures per job: the wall time, the client's CPU (the floor: this
process's own CPU during the loop; the worker: the process's CPU since
"go", all threads, as it reports it) and the CPU of every backend of the
database (``/proc/<pid>/schedstat``, the time on CPU; the worker's slot,
publisher and LISTEN backends separately), and the database's transactions
(``pg_stat_database.xact_commit``). Prints one JSON line per run and the
medians (with min-max) per form and of the ratio worker / floor within a
round. The server must be local (its backends' /proc is read).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import statistics
import time
from typing import Any

import psycopg

from . import floors
from .common import SCHEMA, Databases
from .processing import WorkerProcess, _create


def _cpu_ns(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except OSError:
        return 0


def _backends(conn: psycopg.Connection[Any], dbname: str) -> dict[int, str]:
    rows = conn.execute(
        "SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (dbname,),
    ).fetchall()
    return {int(pid): str(app) for pid, app in rows}


def _commits(conn: psycopg.Connection[Any], dbname: str) -> int:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (dbname,)).fetchone()
    assert row is not None
    return int(row[0])


def floor_run(dsn: str, n: int) -> dict[str, Any]:
    floors.setup(dsn)
    floors._fill(dsn, n)
    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn, autocommit=True) as watch, psycopg.connect(dsn) as conn:
        pid = conn.info.backend_pid
        x0 = _commits(watch, str(dbname))
        b0, c0, t0 = _cpu_ns(pid), time.process_time(), time.perf_counter()
        done = 0
        while True:
            rows = conn.execute(floors.CLAIM, (1, "floor-worker")).fetchall()
            if not rows:
                conn.commit()
                break
            conn.execute(floors.DONE, ([r[0] for r in rows], "floor-worker"))
            conn.commit()
            done += len(rows)
        wall, client, backend = time.perf_counter() - t0, time.process_time() - c0, (_cpu_ns(pid) - b0) / 1e9
        x1 = _commits(watch, str(dbname))
    assert done == n
    return {
        "form": "floor",
        "jobs_s": n / wall,
        "wall_us": wall / n * 1e6,
        "client_us": client / n * 1e6,
        "backend_us": backend / n * 1e6,
        "xacts": (x1 - x0) / n,
    }


def atomic_run(dsn: str, n: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    _create(dsn, [{"type_name": "bench", "input": {"n": i}} for i in range(n)])
    dbname = str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])
    worker = WorkerProcess(dsn, "atomic", 1, "noop", expect=n, env=env)
    out = worker.proc.stdout
    assert out is not None
    try:
        with psycopg.connect(dsn, autocommit=True) as watch:
            x0 = _commits(watch, dbname)
            t0 = time.monotonic()
            worker.go()
            # the worker's backends, as soon as they exist (CPU from their start)
            backends: dict[int, str] = {}
            while True:
                ready, _, _ = select.select([out], [], [], 0.05)
                if not ready:
                    worker.check_alive()
                    if len(backends) < 3:
                        backends.update(_backends(watch, dbname))
                    continue
                line = out.readline()
                if line.startswith("done "):
                    parts = line.split()
                    wall, client = float(parts[1]) - t0, float(parts[4])
                    break
                if not line:
                    worker.check_alive()
            backends.update(_backends(watch, dbname))
            by_app: dict[str, float] = {}
            for pid, app in backends.items():
                by_app[app] = by_app.get(app, 0.0) + _cpu_ns(pid) / 1e9
            x1 = _commits(watch, dbname)
    finally:
        worker.stop()
    return {
        "form": "atomic",
        "jobs_s": n / wall,
        "wall_us": wall / n * 1e6,
        "client_us": client / n * 1e6,
        "backend_us": sum(by_app.values()) / n * 1e6,
        "backends_us": {k: round(v / n * 1e6, 1) for k, v in sorted(by_app.items())},
        "xacts": (x1 - x0) / n,
    }


_CLAIM = (
    "SELECT id, type_name, chain_id, chain_type_name, chain_index, input, priority, attempt, scheduled_at, "
    "created_at, leased_until, last_attempt_error, trace_context, blockers::text, seq, clock_timestamp() "
    f"FROM {SCHEMA}.claim(worker_id => $1, type_names => $2, max_jobs => $3, lease => $4)"
)
_COMPLETE = (
    f"SELECT id, chain_id, status, chain_completed, dependents FROM {SCHEMA}.complete("
    "job_id => $1, worker_id => $2, output => $3::jsonb, attempt => $4, trace_context => $5)"
)


async def _plain_loop(dsn: str) -> tuple[int, float, float, float]:
    """The worker's statements from a plain async loop: (jobs, seconds, client
    CPU seconds, backend CPU seconds)."""
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await conn.execute(f"PREPARE cl (text, text[], integer, interval) AS {_CLAIM}")
    await conn.execute(f"PREPARE co (uuid, text, jsonb, integer, text) AS {_COMPLETE}")
    pid = conn.info.backend_pid
    prefix, done = "", 0
    b0, c0, t0 = _cpu_ns(pid), time.process_time(), time.perf_counter()
    while True:
        cur = psycopg.AsyncClientCursor(conn)
        query = prefix + "BEGIN; EXECUTE cl('plain', ARRAY['bench']::text[], 1, NULL); SAVEPOINT queuert_handler"
        await cur.execute(query.encode(), prepare=False)
        for _ in range(4 if prefix else 1):
            cur.nextset()
        rows = await cur.fetchall()
        if not rows:
            await conn.execute("ROLLBACK")
            break
        prefix = (
            "SET LOCAL queuert.notify = 'job_lost,job_ready_unblocked'; "
            f"EXECUTE co('{rows[0][0]}', 'plain', NULL, {rows[0][7]}, NULL); COMMIT; "
        )
        done += 1
    wall, client, backend = time.perf_counter() - t0, time.process_time() - c0, (_cpu_ns(pid) - b0) / 1e9
    await conn.close()
    return done, wall, client, backend


def plain_run(dsn: str, n: int) -> dict[str, Any]:
    _create(dsn, [{"type_name": "bench", "input": {"n": i}} for i in range(n)])
    dbname = str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])
    with psycopg.connect(dsn, autocommit=True) as watch:
        x0 = _commits(watch, dbname)
        done, wall, client, backend = asyncio.run(_plain_loop(dsn))
        x1 = _commits(watch, dbname)
    assert done == n, (done, n)
    return {
        "form": "plain",
        "jobs_s": n / wall,
        "wall_us": wall / n * 1e6,
        "client_us": client / n * 1e6,
        "backend_us": backend / n * 1e6,
        "xacts": (x1 - x0) / n,
    }


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"


RUNS = {"floor": floor_run, "atomic": atomic_run, "plain": plain_run}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--dsn", default=os.environ.get("QUEUERT_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = ap.parse_args()
    dbs = Databases(args.dsn)
    runs: list[dict[str, Any]] = []
    ratios: dict[str, list[float]] = {"atomic / floor": [], "plain / floor": [], "atomic / plain": []}
    try:
        for r in range(args.rounds):
            pair: dict[str, dict[str, Any]] = {}
            forms = ("floor", "atomic", "plain")
            for form in forms[r % 3 :] + forms[: r % 3]:
                with dbs.fresh(f"atomic-cost-{form}") as dsn:
                    res = RUNS[form](dsn, args.n)
                res["round"] = r
                print(json.dumps(res), flush=True)
                runs.append(res)
                pair[form] = res
            for name in ratios:
                a, b = name.split(" / ")
                ratios[name].append(pair[a]["jobs_s"] / pair[b]["jobs_s"])
    finally:
        dbs.close()
    for form in ("floor", "atomic", "plain"):
        rs = [x for x in runs if x["form"] == form]
        print(
            form,
            " ".join(f"{k} {_summary([x[k] for x in rs])}" for k in ("jobs_s", "wall_us", "client_us", "backend_us", "xacts")),
        )
    for name, values in ratios.items():
        print(f"{name} (jobs/s, within a round):", _summary(values))


if __name__ == "__main__":
    main()
