"""SQLite benchmark: queuert on an SQLite file against raw-sqlite3 floors on
the same WAL file, in the same run (`make bench` runs it as the workload
``sqlite``; alone:)

    .venv/bin/python -m benchmarks.sqlite                 # synchronous=FULL
    .venv/bin/python -m benchmarks.sqlite --synchronous NORMAL --blocks 20
    .venv/bin/python -m benchmarks.sqlite --quick

Pairs, each a floor and the engine doing the same work (one file, WAL, the
same connection settings, Python's sqlite3):

* create-single: floor = BEGIN IMMEDIATE; INSERT one row (v7 id, JSON
  input) into a plain table shaped like queuert_job; COMMIT. Engine =
  ``start_chain(conn, type, input)`` on an autocommit connection (its own
  BEGIN IMMEDIATE ... COMMIT).
* create-single, client: the same floor; ``queuert.start_chain(conn,
  type, input)``, the public client as an application calls it, on the same
  autocommit sqlite3 connection.
* create-batch x1,000: floor = one transaction, executemany INSERT of 1,000
  rows. Engine = ``start_chains(conn, 1,000 items)``, one call per
  transaction. Rates in rows (chains) per second.
* create-batch x1,000, client: the same floor; ``queuert.start_chains(conn,
  [ChainSpec(type, input), ...])``, building the specs.
* claim+complete 1/tx: floor = BEGIN IMMEDIATE; UPDATE ... WHERE seq IN
  (the first pending row in claim order) RETURNING; UPDATE it completed;
  COMMIT. Engine = ``with transaction(conn): claim(conn, w)`` then
  ``complete_jobs(conn, w, [id], attempts=[attempt])`` (atomic mode's
  shape: one job per transaction). Jobs are created beforehand, not timed.
* claim+complete 100/tx: the same with 100 jobs claimed and completed per
  transaction (a batching worker's shape).

Each pair runs in alternating blocks (floor, engine, floor, ...) so that
drift (other processes, WAL checkpoints) lands on both sides; a pair's
ratio is the median of its per-block ratios, its rates the medians of the
blocks. The file is checkpointed before each pair.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import queuert
import queuert._sqlite as qs
from queuert import ChainSpec
from queuert._sqlite._values import new_job_id, now_us

from .sqlite_worker import ratio_summary, run_worker_pairs

FLOOR_DDL = """
CREATE TABLE floor_job (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type_name TEXT NOT NULL,
    input TEXT,
    output TEXT,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0,
    scheduled_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    completed_at INTEGER,
    leased_by TEXT,
    leased_until INTEGER
);
CREATE INDEX floor_job_claim_idx ON floor_job (priority DESC, scheduled_at, seq)
WHERE status = 'pending';
"""
INSERT = (
    "INSERT INTO floor_job (id, type_name, input, status, scheduled_at, created_at)"
    " VALUES (?, 'bench', ?, 'pending', ?, ?)"
)
CLAIM = """
UPDATE floor_job
SET status = 'running', attempt = attempt + 1, leased_by = ?, leased_until = ? + 60000000
WHERE seq IN (
    SELECT seq FROM floor_job
    WHERE status = 'pending' AND scheduled_at <= ?
    ORDER BY priority DESC, scheduled_at, seq
    LIMIT ?
)
RETURNING id, input
"""
DONE = (
    "UPDATE floor_job SET status = 'completed', completed_at = ?, leased_by = NULL,"
    " leased_until = NULL WHERE id = ? AND status = 'running' AND leased_by = ?"
)

#: The figures the design queuert follows published for its SQLite adapter
#: (laptop), from issue 14: chains/s single, chains/s batched, jobs/s atomic.
#: what the pairs are timed with (--cpu: time.process_time)
_clock = time.perf_counter

PUBLISHED = {
    "create-single": 21_700,
    "create-single, client": 21_700,
    "create-batch x1,000": 51_600,
    "create-batch x1,000, client": 51_600,
    "claim+complete 1/tx": 10_200,  # its atomic worker
    "claim+complete 100/tx": 6_800,  # its staged worker (the nearest shape)
    "worker staged c1": 6_800,
    "worker staged c10": 6_800,
    "worker atomic c1": 10_200,
}


def _payload(n: int) -> str:
    return json.dumps({"n": n})


class Bench:
    def __init__(self, path: str, synchronous: str) -> None:
        self.path = path
        qs.migrate(path)
        self.conn = qs.connect(path, synchronous=synchronous)
        self.conn.executescript(FLOOR_DDL)
        self.counter = 0

    def next_n(self) -> int:
        self.counter += 1
        return self.counter

    # -- create-single ------------------------------------------------------

    def floor_single(self, k: int) -> float:
        conn = self.conn
        t = _clock()
        for _ in range(k):
            now = now_us()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(INSERT, (new_job_id(), _payload(self.next_n()), now, now))
            conn.execute("COMMIT")
        return k / (_clock() - t)

    def engine_single(self, k: int) -> float:
        conn = self.conn
        t = _clock()
        for _ in range(k):
            qs.start_chain(conn, "bench", {"n": self.next_n()})
        return k / (_clock() - t)

    def client_single(self, k: int) -> float:
        conn = self.conn
        t = _clock()
        for _ in range(k):
            queuert.start_chain(conn, "bench", {"n": self.next_n()})
        return k / (_clock() - t)

    # -- create-batch -------------------------------------------------------

    def floor_batch(self, k: int, size: int = 1000) -> float:
        conn = self.conn
        t = _clock()
        for _ in range(k):
            now = now_us()
            rows = [(new_job_id(), _payload(self.next_n()), now, now) for _ in range(size)]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT, rows)
            conn.execute("COMMIT")
        return k * size / (_clock() - t)

    def engine_batch(self, k: int, size: int = 1000) -> float:
        conn = self.conn
        t = _clock()
        for _ in range(k):
            qs.start_chains(conn, [{"type_name": "bench", "input": {"n": self.next_n()}} for _ in range(size)])
        return k * size / (_clock() - t)

    def client_batch(self, k: int, size: int = 1000) -> float:
        conn = self.conn
        t = _clock()
        for _ in range(k):
            queuert.start_chains(conn, [ChainSpec("bench", {"n": self.next_n()}) for _ in range(size)])
        return k * size / (_clock() - t)

    # -- claim+complete -----------------------------------------------------

    def fill(self, n: int, type_name: str = "work") -> None:
        """Pending jobs for both sides (not timed): n floor rows, n chains,
        in tables emptied of the creation pairs' rows (claims take any type,
        as the floor's does)."""
        conn = self.conn
        conn.execute("DELETE FROM floor_job")
        conn.execute("DELETE FROM queuert_job")
        for start in range(0, n, 1000):
            size = min(1000, n - start)
            now = now_us() - 1
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT, [(new_job_id(), _payload(i), now, now) for i in range(size)])
            conn.execute("COMMIT")
            qs.start_chains(conn, [{"type_name": type_name, "input": {"n": i}} for i in range(size)])

    def floor_claim(self, k: int, per_tx: int = 1, clock: Callable[[], float] | None = None) -> float:
        conn = self.conn
        clock = clock or _clock
        t = clock()
        for _ in range(k):
            now = now_us()
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(CLAIM, ("floor-worker", now, now, per_tx)).fetchall()
            conn.executemany(DONE, [(now, r[0], "floor-worker") for r in rows])
            conn.execute("COMMIT")
            assert len(rows) == per_tx
        return k * per_tx / (clock() - t)

    def floor_drain(self, n: int, per_tx: int = 1) -> float:
        """floor_claim by the wall clock (the worker pairs: the worker runs
        in another process)."""
        return self.floor_claim(n // per_tx, per_tx, time.perf_counter)

    def engine_claim(self, k: int, per_tx: int = 1) -> float:
        conn = self.conn
        t = _clock()
        for _ in range(k):
            with qs.transaction(conn):
                jobs = qs.claim(conn, "worker", max_jobs=per_tx)
                done = qs.complete_jobs(conn, "worker", [j["id"] for j in jobs], attempts=[j["attempt"] for j in jobs])
                assert len(done) == per_tx and all(d["outcome"] == "completed" for d in done)
        return k * per_tx / (_clock() - t)

    def floor_claim100(self, k: int) -> float:
        return self.floor_claim(k, 100)

    def engine_claim100(self, k: int) -> float:
        return self.engine_claim(k, 100)

    def checkpoint(self) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def paired(bench: Bench, floor: Callable[[int], float], engine: Callable[[int], float], blocks: int, k: int) -> dict[str, Any]:
    bench.checkpoint()
    floor(max(1, k // 5))  # warm-up: statement caches, pages
    engine(max(1, k // 5))
    floors, engines = [], []
    for _ in range(blocks):
        floors.append(floor(k))
        engines.append(engine(k))
    return ratio_summary(floors, engines)


def run_pairs(
    workdir: Path, synchronous: str, blocks: int, quick: bool, engine: bool = True, workers: bool = True
) -> dict[str, dict[str, float]]:
    """Every pair on a fresh WAL file in ``workdir``: name -> floor, engine,
    ratio (median of the blocks' ratios), ratio_min, ratio_max. ``engine``:
    the client and engine pairs; ``workers``: the worker processes' pairs
    (benchmarks/sqlite_worker.py)."""
    single_k, batch_k, claim_k, claim100_k = (20, 1, 20, 1) if quick else (250, 5, 250, 5)
    path = str(workdir / "bench.db")
    bench = Bench(path, synchronous)
    results: dict[str, dict[str, float]] = {}
    if not engine:
        results.update(run_worker_pairs(bench, path, synchronous, max(2, blocks // 2), quick))
        bench.conn.close()
        return results
    results |= {
        "create-single": paired(bench, bench.floor_single, bench.engine_single, blocks, single_k),
        "create-single, client": paired(bench, bench.floor_single, bench.client_single, blocks, single_k),
        "create-batch x1,000": paired(bench, bench.floor_batch, bench.engine_batch, blocks, batch_k),
        "create-batch x1,000, client": paired(bench, bench.floor_batch, bench.client_batch, blocks, batch_k),
    }
    # claim+complete: enough pending jobs for warm-up and every block, both sides
    bench.fill((blocks + 1) * claim_k + claim_k)
    results["claim+complete 1/tx"] = paired(bench, bench.floor_claim, bench.engine_claim, blocks, claim_k)
    # the batched shape a worker uses: 100 claimed and acknowledged per transaction
    bench.fill((blocks + 1) * claim100_k * 100 + claim100_k * 100)
    results["claim+complete 100/tx"] = paired(bench, bench.floor_claim100, bench.engine_claim100, blocks, claim100_k)
    if workers:  # last: they leave their completed rows behind
        results.update(run_worker_pairs(bench, path, synchronous, max(2, blocks // 2), quick))
    bench.conn.close()
    return results


#: make bench's synchronous settings, and the suffix of each one's metric
#: names: FULL (as PostgreSQL runs with fsync on; the names of earlier runs)
#: and NORMAL (what most WAL applications run, where the engine's own CPU
#: shows: no fsync per commit on either side)
MODES = (("FULL", ""), ("NORMAL", ", NORMAL"))


def run_all(dbs: object, sizes: object, results: object) -> None:
    """``make bench``'s workload ``sqlite`` (benchmarks/run.py): the pairs on a
    WAL file with synchronous=FULL, then on a fresh one with NORMAL,
    wall-clock time; each pair's ratio is recorded as a paired metric."""
    quick = getattr(sizes, "reps", 3) == 1 and getattr(sizes, "single_n", 0) < 1000
    for synchronous, suffix in MODES:
        with tempfile.TemporaryDirectory(prefix="queuert-sqlite-bench-") as workdir:
            pairs = run_pairs(Path(workdir), synchronous, 2 if quick else 10, quick)
        for name, r in pairs.items():
            results.add("sqlite", f"{name}{suffix}: queuert / floor", r["ratio"], "x floor, paired")  # type: ignore[attr-defined]
            results.add("sqlite", f"{name}{suffix}: queuert", r["engine"], "/s")  # type: ignore[attr-defined]
            results.add("sqlite", f"{name}{suffix}: floor", r["floor"], "/s")  # type: ignore[attr-defined]
    results.note(  # type: ignore[attr-defined]
        "sqlite",
        f"SQLite {sqlite3.sqlite_version}, WAL, synchronous=FULL (names without a suffix) and NORMAL "
        f"(', NORMAL'); published for the design's SQLite "
        f"adapter: {', '.join(f'{k} {v:,}/s' for k, v in PUBLISHED.items())}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synchronous", default="FULL", choices=["OFF", "NORMAL", "FULL"])
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs")
    parser.add_argument("--only", choices=["engine", "workers"], default=None,
                        help="only the client and engine pairs, or only the worker processes' pairs")
    parser.add_argument("--dir", default=None, help="where the database file goes (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument(
        "--cpu", action="store_true",
        help="time with this process's CPU time instead of the wall clock (steadier on a shared"
        " machine; leaves out waiting for the disk, so use it with --synchronous NORMAL or OFF)",
    )
    args = parser.parse_args()
    global _clock
    _clock = time.process_time if args.cpu else time.perf_counter
    blocks = 2 if args.quick else args.blocks
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="queuert-sqlite-bench-"))
    results = run_pairs(
        workdir, args.synchronous, blocks, args.quick, engine=args.only != "workers", workers=args.only != "engine"
    )

    print(f"SQLite {sqlite3.sqlite_version}, synchronous={args.synchronous}, WAL, {blocks} blocks per pair,"
          f" {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {'CPU' if args.cpu else 'wall'} time")
    print(f"{'workload':24} {'floor /s':>10} {'engine /s':>10} {'ratio':>6} {'(min-max)':>12} {'published /s':>13}")
    for name, r in results.items():
        print(
            f"{name:24} {r['floor']:10,.0f} {r['engine']:10,.0f} {r['ratio']:6.2f}"
            f" {r['ratio_min']:5.2f}-{r['ratio_max']:<5.2f} {PUBLISHED[name]:13,}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({
            "when": datetime.now(timezone.utc).isoformat(),
            "sqlite": sqlite3.sqlite_version,
            "python": platform.python_version(),
            "synchronous": args.synchronous,
            "clock": "cpu" if args.cpu else "wall",
            "blocks": blocks,
            "cpus": os.cpu_count(),
            "results": results,
            "published": PUBLISHED,
        }, indent=2))


if __name__ == "__main__":
    main()
