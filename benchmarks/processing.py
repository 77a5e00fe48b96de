"""Workloads 3, 4, 5 and 7: the worker (queuert.Worker) in its own process.

process-staged / process-atomic: N pre-created no-op jobs (start_chains,
    not timed; VACUUM ANALYZE and CHECKPOINT before the clock starts), one
    worker process at concurrency 1, 10 and 50, with default settings
    (staged: prefetch "auto"). Cold rows (staged at concurrency 10, atomic at
    1): the same jobs drained at once on a fresh install, never analyzed.
    The clock runs from the moment the already imported worker process is
    told to start (it then connects, LISTENs, claims ...) until it reports N
    committed acknowledgements; then the database must hold exactly N
    completed jobs. Staged also runs with prefetch 0 (a claim
    takes only the free slots), labelled, for comparison.
chain-3: N chains step1 -> step2 -> step3 (continue_with twice), staged,
    concurrency 10: from worker start until every chain is complete.
wake-up: an idle worker (staged, concurrency 10, LISTEN); jobs created one
    per transaction, 20 ms apart; latency from the producer's COMMIT
    returning to the handler starting (both CLOCK_MONOTONIC, same machine).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from . import floors, wakeup_trace
from .common import SCHEMA, Databases, Results, Sizes, percentile

ROOT = Path(__file__).resolve().parent.parent


def _create(dsn: str, items: list[dict[str, object]], analyze: bool = True) -> None:
    """Creates the jobs (not timed). analyze=False is the cold case: the jobs
    arrive on a fresh install and are drained at once, with no statistics on
    the tables. Autovacuum keeps vacuuming them, as in the analyzed runs, but
    its ANALYZE is put out of reach (threshold 2^31-1) so no statistics
    arrive mid-run; the caller checks with _statistics afterwards."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not analyze:
            for table in ("job", "job_blocker"):
                conn.execute(
                    f"ALTER TABLE {SCHEMA}.{table} SET (autovacuum_analyze_threshold = 2147483647)"
                )
            before = _statistics(conn)
            assert before == (0, None), f"cold run starts with statistics: {before}"
        for start in range(0, len(items), 5000):
            conn.execute(
                f"SELECT count(*) FROM {SCHEMA}.start_chains(%s::jsonb)",
                (json.dumps(items[start : start + 5000]),),
            )
        if analyze:
            conn.execute("VACUUM ANALYZE " + f"{SCHEMA}.job")
        conn.execute("CHECKPOINT")


def _statistics(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[int, object]:
    """(rows of pg_statistic about queuert.job, its last (auto)analyze): (0,
    None) means the planner has no statistics for it."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM pg_statistic WHERE starelid = s.relid),"
        " greatest(s.last_analyze, s.last_autoanalyze)"
        f" FROM pg_stat_user_tables AS s WHERE s.relid = '{SCHEMA}.job'::regclass"
    ).fetchone()
    assert row is not None
    return int(str(row[0])), row[1]


class WorkerProcess:
    def __init__(
        self,
        dsn: str,
        mode: str,
        concurrency: int,
        kind: str,
        times_file: str = "",
        prefetch: int | str = "auto",
        expect: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        args = [sys.executable, "-m", "benchmarks.worker_proc", dsn, mode, str(concurrency), kind]
        if times_file:
            args.append(times_file)
        env = {**os.environ, **(env or {})}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env["QUEUERT_BENCH_PREFETCH"] = str(prefetch)
        env["QUEUERT_BENCH_EXPECT"] = str(expect)
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.split()[:1] != ["ready"]:
            self.proc.kill()
            raise RuntimeError(f"worker process did not start: {line!r}")
        self.ready_rss_kib = int(line.split()[1])  # imported, Worker built, not started

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker process exited with {self.proc.returncode}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


IDLE = (
    f"SELECT NOT EXISTS (SELECT 1 FROM {SCHEMA}.job WHERE status = 'pending') "
    f"AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.job WHERE status = 'running')"
)


def _drain(
    dsn: str,
    mode: str,
    concurrency: int,
    kind: str,
    cap: float,
    expect: int,
    prefetch: int | str = "auto",
    env: dict[str, str] | None = None,
    cpu: list[float] | None = None,
) -> tuple[float, int | None]:
    """Starts the worker; returns (seconds, None) once the worker process
    reports ``expect`` committed acknowledgements (its own counters: the
    database is not polled while it runs, a poll loop would compete for the
    2 cores) and the database then shows nothing pending or running; or
    (cap, jobs completed so far) when the time cap is hit first. ``cpu``:
    gets the CPU seconds the worker process used until then appended (not
    when capped)."""
    worker = WorkerProcess(dsn, mode, concurrency, kind, prefetch=prefetch, expect=expect, env=env)
    out = worker.proc.stdout
    assert out is not None
    try:
        with psycopg.connect(dsn, autocommit=True) as poll:
            t0 = time.monotonic()
            worker.go()
            while True:
                ready, _, _ = select.select([out], [], [], 0.5)
                if ready:
                    line = out.readline()
                    if line.startswith("done "):
                        t_done = float(line.split()[1])
                        if cpu is not None:
                            cpu.append(float(line.split()[4]))
                        row = poll.execute(IDLE).fetchone()
                        assert row is not None and row[0], "worker reported done, database disagrees"
                        return t_done - t0, None
                    if not line:
                        worker.check_alive()
                elapsed = time.monotonic() - t0
                if elapsed > cap:
                    done = poll.execute(
                        f"SELECT count(*) FROM {SCHEMA}.job WHERE status = 'completed'"
                    ).fetchone()
                    assert done is not None
                    return elapsed, int(done[0])
                worker.check_alive()
    finally:
        worker.stop()


def _status_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            str(s): int(n)
            for s, n in conn.execute(f"SELECT status, count(*) FROM {SCHEMA}.job GROUP BY status")
        }


def _drain_once(
    dbs: Databases, sizes: Sizes, mode: str, c: int, prefetch: int | str, cold: bool, n: int
) -> tuple[float, bool]:
    """One drain of n pre-created no-op jobs on a fresh database: (jobs/s,
    capped). Checks that nothing was lost and, when cold, that no statistics
    arrived."""
    with dbs.fresh(f"process-{mode}-{c}-{prefetch}") as dsn:
        _create(dsn, [{"type_name": "bench", "input": {"n": i}} for i in range(n)], analyze=not cold)
        seconds, done = _drain(dsn, mode, c, "noop", sizes.drain_cap_s, n, prefetch)
        counts = _status_counts(dsn)
        if done is None:
            assert counts == {"completed": n}, counts
        else:
            # capped: after the graceful stop nothing may be running or lost
            assert counts.get("running", 0) == 0, counts
            assert sum(counts.values()) == n and counts["completed"] >= done, counts
        if cold:
            with psycopg.connect(dsn) as conn:
                after = _statistics(conn)
            assert after == (0, None), f"statistics arrived during the cold run: {after}"
    return (n if done is None else done) / seconds, done is not None


def _floor_once(dbs: Databases, per_tx: int, n: int) -> float:
    """make bench's own claim+complete floor (benchmarks/floors.py), on a
    fresh database, run next to the drains it is compared with."""
    with dbs.fresh(f"floor-claim{per_tx}") as dsn:
        floors.setup(dsn)
        return floors.claim_loop(dsn, n, per_tx)


def process(dbs: Databases, sizes: Sizes, results: Results, mode: str) -> None:
    wl = f"process-{mode}"
    # The paired trio: make bench's own floor (100 per transaction for
    # staged, 1 for atomic), the drain after VACUUM ANALYZE and the cold
    # drain (fresh install, never analyzed), back to back, their order
    # rotated by repetition, so the ratios between them compare runs seconds
    # apart rather than minutes (issue 16: this machine's speed drifts).
    paired_c = 10 if mode == "staged" else 1
    per_tx = 100 if mode == "staged" else 1
    floor_n = sizes.floor_claim100_n if per_tx == 100 else sizes.floor_claim1_n
    floor_label = f"floor {per_tx}/tx"
    done_before = results.get(wl, f"concurrency {paired_c}")
    rep = len(done_before.values) if done_before is not None else 0
    trio = ["floor", "analyzed", "cold"]
    trio = trio[rep % 3 :] + trio[: rep % 3]
    rate: dict[str, float] = {}
    for part in trio:
        if part == "floor":
            rate[part] = _floor_once(dbs, per_tx, floor_n)
            if per_tx in sizes.claim_floors_in_trios:  # the floor workload's row too
                results.add(floors.NAME, floors.claim_metric(per_tx), rate[part], "jobs/s")
        else:
            rate[part] = _record(dbs, sizes, results, mode, paired_c, "auto", part == "cold")
    for num, den, label in (
        ("analyzed", "floor", f"concurrency {paired_c} / {floor_label}, adjacent"),
        ("cold", "floor", f"concurrency {paired_c}, cold / {floor_label}, adjacent"),
        ("cold", "analyzed", f"concurrency {paired_c}, cold / analyzed, adjacent"),
    ):
        results.add(wl, label, rate[num] / rate[den], "x, paired")
    results.note(
        wl,
        f"adjacent rows: make bench's claim+complete floor ({per_tx} per transaction, {floor_n:,}"
        f" jobs), the concurrency {paired_c} drain after VACUUM ANALYZE and the cold drain, back"
        " to back in each repetition (order rotated), each ratio taken within a repetition",
    )
    # the other concurrencies, then (staged) claims of the free slots only
    runs: list[tuple[int, int | str]] = [(c, "auto") for c in sizes.concurrencies if c != paired_c]
    if mode == "staged":
        runs += [(c, 0) for c in sizes.concurrencies]
    for c, prefetch in runs:
        _record(dbs, sizes, results, mode, c, prefetch, False)


def _record(
    dbs: Databases, sizes: Sizes, results: Results, mode: str, c: int, prefetch: int | str, cold: bool
) -> float:
    if prefetch == 0:
        n = sizes.process_prefetch0_n
    elif mode == "atomic":
        n = sizes.process_atomic_n
    else:
        n = sizes.process_n
    label = f"concurrency {c}" + (f", prefetch {prefetch}" if prefetch != "auto" else "")
    label += ", cold" if cold else ""
    rate, capped = _drain_once(dbs, sizes, mode, c, prefetch, cold, n)
    results.add(f"process-{mode}", label, rate, "jobs/s")
    results.note(
        f"process-{mode}",
        f"{label}: {n:,} no-op jobs"
        + (" (prefetch 0: a claim takes only the free slots)" if prefetch == 0 else "")
        + (
            " created on a fresh install and drained at once: no VACUUM or ANALYZE in"
            " between, autovacuum's ANALYZE out of reach (threshold 2^31-1), pg_statistic"
            " checked empty and no analyze recorded for queuert.job before and after"
            if cold else ""
        ),
    )
    if capped:
        results.note(
            f"process-{mode}",
            f"{label}: CAPPED at {sizes.drain_cap_s:.0f}s in some runs "
            "(rate = jobs completed / time; the rest verified pending, none lost)",
        )
    return rate


def run_staged(dbs: Databases, sizes: Sizes, results: Results) -> None:
    process(dbs, sizes, results, "staged")


def run_atomic(dbs: Databases, sizes: Sizes, results: Results) -> None:
    process(dbs, sizes, results, "atomic")


def run_chain3(dbs: Databases, sizes: Sizes, results: Results) -> None:
    n = sizes.chain3_n
    with dbs.fresh("chain-3") as dsn:
        _create(dsn, [{"type_name": "step1", "input": {"n": i}} for i in range(n)])
        seconds, capped = _drain(dsn, "staged", 10, "chain3", sizes.drain_cap_s * 1.5, 3 * n)
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                f"SELECT count(*) FILTER (WHERE status = 'completed' AND output IS NOT NULL), "
                f"count(*) FROM {SCHEMA}.chain"
            ).fetchone()
            jobs = conn.execute(
                f"SELECT count(*) FROM {SCHEMA}.job WHERE status = 'completed'"
            ).fetchone()
        assert row is not None and jobs is not None and row[1] == n, (row, n)
        counts = _status_counts(dsn)
        assert counts.get("running", 0) == 0, counts
        if capped is None:
            assert row[0] == n and counts == {"completed": 3 * n}, (row, counts)
            # only a full drain says how fast chains finish: FIFO runs every
            # step1 before the step2s they created, so a capped run ends with
            # few complete chains
            results.add("chain-3", "chains/s (staged, concurrency 10)", n / seconds, "chains/s")
        else:
            results.note(
                "chain-3",
                "CAPPED in some runs: jobs/s counts jobs completed by the cap; "
                "chains/s only from runs that drained every chain",
            )
    results.add("chain-3", "jobs/s (staged, concurrency 10)", jobs[0] / seconds, "jobs/s")
    results.note("chain-3", f"{n:,} chains of 3 jobs, pre-created")


def run_wakeup(dbs: Databases, sizes: Sizes, results: Results) -> None:
    n, gap, warmup = sizes.wakeup_n, sizes.wakeup_gap_s, 10
    with dbs.fresh("wake-up") as dsn, tempfile.TemporaryDirectory() as tmp:
        times_file = os.path.join(tmp, "times")
        trace_file = os.path.join(tmp, "trace")
        worker = WorkerProcess(
            dsn, "staged", 10, "wakeup", times_file, env={"QUEUERT_BENCH_WAKE_TRACE": trace_file}
        )
        commits: dict[int, float] = {}
        try:
            worker.go()
            time.sleep(1.0)  # connected, listening, idle
            with psycopg.connect(dsn, autocommit=True) as conn:
                stmt = f"SELECT id FROM {SCHEMA}.start_chain(type_name => 'wake', input => %s::jsonb)"
                next_at = time.monotonic()
                for i in range(-warmup, n):
                    next_at += gap
                    conn.execute(stmt, (json.dumps({"i": i}),)).fetchall()
                    commits[i] = time.monotonic()
                    worker.check_alive()
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                deadline = time.monotonic() + 30
                while True:
                    row = conn.execute(IDLE).fetchone()
                    if row is not None and row[0]:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError("wake-up jobs not all processed")
                    time.sleep(0.01)
        finally:
            worker.stop()
        started: dict[int, float] = {}
        for line in Path(times_file).read_text().splitlines():
            key, t = line.split()
            started.setdefault(int(key), float(t))
        parts = wakeup_trace.segments(trace_file, commits, started, n)
    lat = sorted((started[i] - commits[i]) * 1000 for i in range(n))
    assert len(lat) == n
    results.add("wake-up", "p50", percentile(lat, 50), "ms", False)
    results.add("wake-up", "p95", percentile(lat, 95), "ms", False)
    results.add("wake-up", "p99", percentile(lat, 99), "ms", False)
    results.add("wake-up", "max", lat[-1], "ms", False)
    # where the time goes (issue 16 item 4): each segment's median
    for label, ms in wakeup_trace.medians(parts).items():
        results.add("wake-up", f"p50 split: {label}", ms, "ms", False)
    results.note(
        "wake-up",
        "p50 split: medians of each segment over the jobs whose points were all seen"
        " (benchmarks/wakeup_trace.py): NOTIFY delivery = COMMIT returned -> the worker's"
        " LISTEN connection yields job_ready; worker wake path = -> claim sent; claim round"
        " trip = queuert.claim + the COMMIT's WAL flush, one round trip; to the handler ="
        " -> handler's first line. The medians need not add up to the p50",
    )
    results.note(
        "wake-up",
        f"{n} jobs {gap * 1000:.0f} ms apart (+{warmup} warm-up jobs not counted), "
        "staged worker, concurrency 10",
    )
