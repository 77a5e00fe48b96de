"""The worker on SQLite against the raw floor, paired (benchmarks/sqlite.py
runs these after its engine pairs).

Each pair alternates blocks on one WAL file: the floor drains ``n`` rows of
``floor_job`` claim+complete one per transaction (BEGIN IMMEDIATE; the
minimal claim UPDATE ... RETURNING; the completion UPDATE; COMMIT, as
benchmarks/sqlite.py's claim+complete 1/tx), then a worker process
(``benchmarks.worker_proc``, a no-op handler) drains ``n`` queuert jobs,
timed from the moment the already imported process is told to start (it
then opens its connections and claims) until it reports ``n`` committed
acknowledgements. Wall-clock time on both sides: the worker is another
process. The pair's ratio is the median of the per-block ratios.

Rows: staged at concurrency 1 and 10 (prefetch "auto": batches of claims
and acknowledgements per transaction), atomic at concurrency 1 (one job
per transaction, its claim, handler and completion).
"""

from __future__ import annotations

import select
import sqlite3
import statistics
import time
from collections.abc import Callable

import queuert._sqlite as qs

from .processing import WorkerProcess

#: (label, mode, concurrency)
RUNS = (
    ("worker staged c1", "staged", 1),
    ("worker staged c10", "staged", 10),
    ("worker atomic c1", "atomic", 1),
)


def _drain_with_worker(path: str, mode: str, concurrency: int, n: int, synchronous: str) -> float:
    """Jobs per second of one worker process draining ``n`` jobs."""
    dsn = f"sqlite:///{path}?synchronous={synchronous}"
    worker = WorkerProcess(dsn, mode, concurrency, "noop", expect=n)
    out = worker.proc.stdout
    assert out is not None
    try:
        t0 = time.monotonic()
        worker.go()
        while True:
            ready, _, _ = select.select([out], [], [], 1.0)
            if ready:
                line = out.readline()
                if line.startswith("done "):
                    return n / (float(line.split()[1]) - t0)
                if not line:
                    worker.check_alive()
            worker.check_alive()
            if time.monotonic() - t0 > 120:
                raise RuntimeError(f"the {mode} worker did not drain {n} jobs in 120 s")
    finally:
        worker.stop()


def pair_worker(
    conn: sqlite3.Connection,
    path: str,
    fill: Callable[[int, str], None],
    floor: Callable[[int, int], float],
    mode: str,
    concurrency: int,
    blocks: int,
    n: int,
    synchronous: str,
) -> dict[str, float]:
    """Alternating blocks: the floor draining n rows 1/tx, the worker n jobs."""
    floors, workers = [], []
    for _ in range(blocks):
        fill(n, "bench")  # the type worker_proc's no-op handler takes
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        floors.append(floor(n, 1))
        workers.append(_drain_with_worker(path, mode, concurrency, n, synchronous))
        left = conn.execute("SELECT count(*) FROM queuert_job WHERE status <> 'completed'").fetchone()
        assert left == (0,), f"the worker left {left[0]} jobs unfinished"
    return ratio_summary(floors, workers)


def ratio_summary(floors: list[float], engines: list[float]) -> dict[str, float]:
    """Medians of paired blocks' rates and of their ratios, with the ratios' range."""
    ratios = [e / f for f, e in zip(floors, engines)]
    return {
        "floor": statistics.median(floors),
        "engine": statistics.median(engines),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def run_worker_pairs(bench: object, path: str, synchronous: str, blocks: int, quick: bool) -> dict[str, dict[str, float]]:
    """The three worker rows against the floor, on ``bench``'s file."""
    # with synchronous=FULL every floor commit waits for the disk (a few
    # hundred per second here): fewer jobs per block keep make bench short
    n = 500 if quick else (1000 if synchronous in ("FULL", "EXTRA") else 5000)
    conn: sqlite3.Connection = bench.conn  # type: ignore[attr-defined]
    floor: Callable[[int, int], float] = bench.floor_drain  # type: ignore[attr-defined]
    fill: Callable[[int, str], None] = bench.fill  # type: ignore[attr-defined]
    qs.set_job_type(conn, "bench")  # the worker's type, the default policy
    return {
        label: pair_worker(conn, path, fill, floor, mode, c, blocks, n, synchronous)
        for label, mode, c in RUNS
    }
