"""Shared helpers of the benchmark harness: fresh databases, timing, stats."""

from __future__ import annotations

import itertools
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from queuert.migrate import migrate

SCHEMA = "queuert"
#: the server the harness runs on unless --dsn names another
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
_counter = itertools.count(1)


def dsn_for(base: str, dbname: str) -> str:
    params = conninfo_to_dict(base)
    params["dbname"] = dbname
    return make_conninfo("", **params)


@dataclass
class Sizes:
    """Every size a workload uses; `quick` shrinks them for the smoke run."""

    reps: int = 3
    # the unpaired single-start rows (floor INSERT, start_chain SQL): 2-3 s
    # each at 1,800-3,700/s (the judged figure is the ladder's, paired)
    single_n: int = 5_000
    # per rung, in blocks of 250 alternating with the floor: 10 per-block
    # ratios a repetition (their spread within a run is 0.02-0.03x)
    ladder_n: int = 2_500
    create_notify_n: int = 2_500  # per broker side, in blocks of 250 (create-notify)
    # create-notify's deployment shape: rounds of one block per side (4
    # producers x 100 starts, 0.1-0.4 s a block at load 3-4) after 2-3 s of
    # starting processes and subscribing: 8 rounds took 6.6-13.3 s a
    # repetition, 6 keep three repetitions near 25 s (budget 40 s)
    create_notify_deploy_rounds: int = 6
    # the unpaired x1,000 rows (floor unnest, start_chains): 100 statements,
    # 1-2 s at 50,000-135,000/s (the judged figure is the paired one)
    batch_total: int = 100_000
    batch_total_small: int = 20_000  # batch sizes 100 and 5,000, and the client
    batch_paired_total: int = 100_000  # per side, in blocks of 10 statements alternating with the floor
    # create-client: rounds of two pairs of adjacent blocks (raw and client,
    # sync then async or the reverse), each pair after a floor block (single:
    # 50 starts a block; batch: 5 calls of 1,000): as many starts and calls
    # as the 12 and 6 rounds of four forms in blocks of 100 and 10 before
    # (create_client.py), twice as many pairs
    client_single_rounds: int = 24
    client_batch_rounds: int = 12
    floor_claim1_n: int = 5_000
    floor_claim100_n: int = 50_000
    process_n: int = 50_000
    # atomic runs near the commit rate at every concurrency (800-2,200
    # jobs/s on a quiet day): 5,000 jobs take 2.5-6 s, thousands of commits
    # at a steady rate, the size of the 1/tx floor it is paired with
    # (10,000 took 5-12 s a drain, four drains a repetition)
    process_atomic_n: int = 5_000
    # the labelled prefetch-0 comparison rows (staged): at concurrency 1 they
    # run near the commit rate (about 800-1,000 jobs/s), 3 s a drain
    process_prefetch0_n: int = 2_500
    # telemetry's atomic c1 pairs (with / without the SDK, drains in ABBA
    # order: two pairs a repetition, 4,000 jobs a drain, 3-5 s at 800-1,500
    # jobs/s) and its 1 ms handler pair (staged c10, about 1,000 jobs/s)
    telemetry_atomic_n: int = 4_000
    telemetry_atomic_pairs: int = 2
    telemetry_work_n: int = 2_500
    # telemetry's staged c10 no-op drains (four settings a repetition):
    # 20,000 jobs run 1-3 s at 6,000-18,000 jobs/s, CPU per job from tens of
    # thousands of attempts; the worker's own start (~50 ms) is in every side
    telemetry_staged_n: int = 20_000
    # attempts per round of benchmarks/telemetry_cost.py (CPU time, 5 rounds)
    telemetry_cost_n: int = 2_000
    concurrencies: tuple[int, ...] = (1, 10, 50)
    chain3_n: int = 5_000  # 15,000 jobs, 2-3 s at staged c10
    fanin_n: int = 10_000
    wakeup_n: int = 500
    wakeup_gap_s: float = 0.020
    # per notifier, six notifiers per repetition: p99 is the 3rd-highest of
    # 200 latencies, as it was of 250
    wakeup_notify_n: int = 200
    scale_completed: int = 1_000_000
    scale_blocked: int = 1_000_000
    scale_claims: int = 2_000
    dashboard_jobs: int = 1_000_000
    dashboard_samples: int = 20  # requests per page and repetition
    # worker-memory (benchmarks/memory.py): jobs in flight at concurrency 10
    # and 100, and the long drain whose RSS must not grow
    memory_inflight_n: int = 10_000
    # the in-flight drains are run this many times, not once per repetition:
    # the peak RSS is a count of pages, the same from run to run within
    # 0.1 MiB, however loaded the machine
    memory_reps: int = 1
    memory_drain_n: int = 100_000
    # retention (issue 17): completed rows retained, a pending backlog for
    # the busy worker, claims sampled, create blocks beside the pruner
    # 3,000,000 retained rows: about 1 GiB of heap and indexes, eight
    # times shared_buffers (10,000,000 took 80 s to build, see README)
    retention_completed: int = 3_000_000
    retention_backlog: int = 1_000_000
    retention_claims: int = 2_000
    retention_rounds: int = 10
    retention_block: int = 300
    # a safety net: every default drain finishes well inside it on 2 cores
    drain_cap_s: float = 60.0
    # jobs per transaction of the claim+complete floors that the processing
    # workloads' adjacent trios measure in every repetition (run.main sets
    # it when process-staged / process-atomic run): the floor workload then
    # does not run the same floor a second time, the trio's run is its row
    claim_floors_in_trios: tuple[int, ...] = ()

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            reps=1,
            single_n=200,
            ladder_n=250,
            create_notify_n=250,
            create_notify_deploy_rounds=1,
            batch_total=5_000,
            batch_total_small=5_000,
            batch_paired_total=5_000,
            client_single_rounds=1,
            client_batch_rounds=1,
            floor_claim1_n=200,
            floor_claim100_n=2_000,
            process_n=500,
            process_atomic_n=300,
            process_prefetch0_n=300,
            telemetry_atomic_n=300,
            telemetry_atomic_pairs=2,
            telemetry_work_n=50,
            telemetry_staged_n=500,
            telemetry_cost_n=1_000,
            concurrencies=(1, 10),
            chain3_n=200,
            fanin_n=300,
            wakeup_n=30,
            wakeup_gap_s=0.010,
            wakeup_notify_n=20,
            scale_completed=10_000,
            scale_blocked=10_000,
            scale_claims=200,
            dashboard_jobs=20_000,
            dashboard_samples=3,
            memory_inflight_n=300,
            memory_drain_n=2_000,
            retention_completed=50_000,
            retention_backlog=20_000,
            retention_claims=200,
            retention_rounds=2,
            retention_block=50,
            drain_cap_s=3.0,
        )


class Databases:
    """Creates a brand-new database per workload run from a migrated template
    (the schema install happens once, before any clock starts)."""

    def __init__(self, base_dsn: str) -> None:
        self.base_dsn = base_dsn
        self.template = f"queuert_bench_tpl_{os.getpid()}"
        self._ensure_template()

    def _admin(self, statement: sql.Composed) -> None:
        # A connection per statement: survives a server restart between runs.
        with psycopg.connect(self.base_dsn, autocommit=True) as conn:
            conn.execute(statement)

    def _ensure_template(self) -> None:
        self._drop(self.template)
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.template)))
        migrate(dsn_for(self.base_dsn, self.template), schema=SCHEMA)

    def _drop(self, name: str) -> None:
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    @contextmanager
    def fresh(self, label: str) -> Iterator[str]:
        name = f"queuert_bench_{os.getpid()}_{next(_counter)}"
        self._admin(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(self.template)
            )
        )
        try:
            yield dsn_for(self.base_dsn, name)
        finally:
            try:
                self._drop(name)
            except psycopg.Error as e:  # e.g. the server restarted meanwhile
                print(f"(could not drop {name}: {e})")

    def close(self) -> None:
        try:
            self._drop(self.template)
        except psycopg.Error as e:
            print(f"(could not drop {self.template}: {e})")


@dataclass
class Metric:
    workload: str
    name: str
    unit: str
    higher_is_better: bool = True
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def as_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "metric": self.name,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "values": self.values,
            "median": self.median if self.values else None,
            "min": min(self.values) if self.values else None,
            "max": max(self.values) if self.values else None,
        }


class Results:
    def __init__(self) -> None:
        self.metrics: dict[tuple[str, str], Metric] = {}
        self.notes: dict[str, list[str]] = {}

    def add(
        self, workload: str, name: str, value: float, unit: str, higher_is_better: bool = True
    ) -> None:
        key = (workload, name)
        if key not in self.metrics:
            self.metrics[key] = Metric(workload, name, unit, higher_is_better)
        self.metrics[key].values.append(value)

    def note(self, workload: str, text: str) -> None:
        notes = self.notes.setdefault(workload, [])
        if text not in notes:
            notes.append(text)

    def reserve(self, workload: str, name: str, unit: str, higher_is_better: bool = True) -> None:
        """Puts the metric's row in the table here, filled in later by add."""
        key = (workload, name)
        if key not in self.metrics:
            self.metrics[key] = Metric(workload, name, unit, higher_is_better)

    def get(self, workload: str, name: str) -> Metric | None:
        return self.metrics.get((workload, name))


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def execute_parallel(dsn: str, statements: list[tuple[str, Any]], connections: int = 2) -> None:
    """Runs setup statements (bulk INSERT ... SELECT of independent row
    ranges) on ``connections`` connections at once, each statement in its
    own transaction: on 2 cores a build that one backend would run alone
    takes about half the wall time. Raises the first error."""
    from concurrent.futures import ThreadPoolExecutor

    todo = list(statements)

    def work() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while todo:
                try:
                    query, params = todo.pop(0)
                except IndexError:
                    return
                conn.execute(query, params)

    with ThreadPoolExecutor(connections) as pool:
        for f in [pool.submit(work) for _ in range(connections)]:
            f.result()


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def wait_until(conn: psycopg.Connection[Any], query: str, params: Any, timeout: float) -> None:
    """Polls `query` (one boolean) until true; raises after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute(query, params).fetchone()
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.commit()
        if row and row[0]:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not reached in {timeout}s: {query}")
        time.sleep(0.005)
