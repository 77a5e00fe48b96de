"""Workload 7b, wake-up-notify: wake-up latency per notifier.

The wake-up workload's measurement with each notifier, all in one
repetition and in turns: LISTEN/NOTIFY (the engine's NOTIFY, the worker's
default), Redis, a Redis Cluster of three nodes of our own, NATS, and Redis
with worker and producer going through a PgBouncer of our own in
transaction mode. One idle worker process per notifier (staged,
concurrency 10, each on a database of its own), all started together; the
producer goes round them ``BLOCK`` (10) jobs at a time, the order rotating
each round, so every notifier's jobs are spread over the same minutes as
LISTEN's and drift on a shared machine hits them alike (measured one after
the other, 5 s each, "Redis, no budget" read -0.60 to +1.63 ms over LISTEN
in three runs of the same code at load 3). Jobs are created one per transaction through the Python client
(``queuert.start_chain`` in ``queuert.transaction_hooks(notifier)``, as an
application does), ``wakeup_notify_n`` of them ``wakeup_gap_s`` apart, after
10 warm-up jobs; latency from ``start_chain``'s commit returning in the
producer to the handler's first line (both CLOCK_MONOTONIC), so a broker's
figure includes the publish after commit. With a broker the database runs
with ``queuert.notify = 'none'`` (no engine NOTIFY at all), as recommended.

Reported: p50 and p99 per notifier, and each broker's p50 minus (and over)
the LISTEN/NOTIFY p50 of the same repetition (target: within 1 ms; p99
target: 5 ms). The worker is the only ``job_ready`` listener on its broker,
so once it has counted the listeners (in the background, within a second of
the first take) it claims at once and takes its unit of the wake budget
meanwhile (docs/notify.md, "A lone listener does not ask"); "Redis, no
budget" skips budgets altogether. Redis producers hand their hint to the
notifier's writer thread (``CLIENT REPLY OFF``). Needs redis-server, redis-cli,
nats-server (with JetStream) and pgbouncer, which ``make bench`` /
``scripts/ensure-services.sh`` provide.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import queuert
from queuert.notify import Notifier, notifier_from_url

from .common import Databases, Results, Sizes, percentile
from .brokers import drop_nats_bucket
from .processing import IDLE, WorkerProcess

ROOT = Path(__file__).resolve().parent.parent
# the same real servers the notify tests start (a cluster, a pgbouncer)
sys.path.insert(0, str(ROOT / "tests_py"))
import notify_brokers  # type: ignore[import-not-found]  # noqa: E402

WORKLOAD = "wake-up-notify"
#: (label, notifier kind); LISTEN first: the others are compared with it
ADAPTERS = [
    ("LISTEN/NOTIFY", "postgres"),
    ("Redis", "redis"),
    ("Redis Cluster", "redis-cluster"),
    ("NATS", "nats"),
    ("Redis via PgBouncer", "redis-pgbouncer"),
    # the same as Redis with the worker's wake budget skipped altogether (a
    # lone worker takes its unit in the background: this row should match)
    ("Redis, no budget", "redis-nobudget"),
]
BROKER_LABELS = [label for label, kind in ADAPTERS if kind != "postgres"]

_servers = contextlib.ExitStack()
atexit.register(_servers.close)
_cluster_ports: list[int] = []
_bouncer_port: list[int] = []


def _cluster() -> int:
    if not _cluster_ports:
        _cluster_ports.extend(_servers.enter_context(notify_brokers.redis_cluster()))
    return _cluster_ports[0]


def _bouncer(dsn: str) -> int:
    if not _bouncer_port:
        p = conninfo_to_dict(dsn)
        server = _servers.enter_context(
            notify_brokers.own_pgbouncer(str(p.get("host") or "127.0.0.1"), int(p.get("port") or 5432))
        )
        _bouncer_port.append(server.port)
    return _bouncer_port[0]


def _setup(kind: str, dsn: str, prefix: str) -> tuple[str, str]:
    """(the DSN worker and producer use, the worker's --notify URL)."""
    if kind == "postgres":
        return dsn, "postgres"
    params = conninfo_to_dict(dsn)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET queuert.notify = 'none'").format(sql.Identifier(str(params["dbname"])))
        )
    if kind in ("redis", "redis-nobudget"):
        return dsn, f"{notify_brokers.REDIS_URL}?prefix={prefix}"
    if kind == "redis-cluster":
        return dsn, f"redis+cluster://127.0.0.1:{_cluster()}?prefix={prefix}"
    if kind == "nats":
        return dsn, f"{notify_brokers.NATS_URL}?prefix={prefix}"
    assert kind == "redis-pgbouncer"
    pooled = make_conninfo(**{**params, "host": "127.0.0.1", "port": str(_bouncer(dsn))})  # type: ignore[arg-type]
    return pooled, f"{notify_brokers.REDIS_URL}?prefix={prefix}"


#: jobs per adapter in a row before the producer turns to the next adapter
BLOCK = 10


class _Adapter:
    """One adapter's idle worker (its own database) and the producer's side."""

    def __init__(self, stack: contextlib.ExitStack, dbs: Databases, kind: str, tmp: str) -> None:
        self.kind = kind
        self.prefix = f"bench{os.getpid()}{kind.replace('-', '')}"
        self.dsn = stack.enter_context(dbs.fresh(f"wake-up-{kind}"))
        use_dsn, notify = _setup(kind, self.dsn, self.prefix)
        self.times_file = os.path.join(tmp, f"times-{kind}")
        env = {"QUEUERT_BENCH_NOTIFY": notify}
        if kind == "redis-pgbouncer":
            env["QUEUERT_BENCH_PREPARE_THRESHOLD"] = "none"
        if kind == "redis-nobudget":
            env["QUEUERT_BENCH_WAKE_BUDGETS"] = "0"
        self.notifier: Notifier | None = None if kind == "postgres" else notifier_from_url(notify)
        stack.callback(self._cleanup)  # runs after the worker stopped (registered first)
        self.worker = WorkerProcess(use_dsn, "staged", 10, "wakeup", self.times_file, env=env)
        stack.callback(self.worker.stop)
        threshold = None if kind == "redis-pgbouncer" else 5
        self.conn = stack.enter_context(psycopg.connect(use_dsn, autocommit=True, prepare_threshold=threshold))
        self.commits: dict[int, float] = {}

    def start(self, i: int) -> None:
        with queuert.transaction_hooks(self.notifier):
            queuert.start_chain(self.conn, "wake", {"i": i})  # autocommit: committed here
            self.commits[i] = time.monotonic()
        self.worker.check_alive()

    def wait_idle(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as direct:
            deadline = time.monotonic() + 30
            while not (direct.execute(IDLE).fetchone() or (False,))[0]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"wake-up jobs ({self.kind}) not all processed")
                time.sleep(0.01)

    def latencies(self, n: int) -> list[float]:
        started: dict[int, float] = {}
        for line in Path(self.times_file).read_text().splitlines():
            key, t = line.split()
            started.setdefault(int(key), float(t))
        return sorted((started[i] - self.commits[i]) * 1000 for i in range(n))

    def _cleanup(self) -> None:
        if self.notifier is not None:
            asyncio.run(self.notifier.close())
        if self.kind == "nats":  # ours: leave the shared NATS as found
            asyncio.run(drop_nats_bucket(f"{self.prefix}-wake-hints"))


def _measure(dbs: Databases, sizes: Sizes) -> dict[str, list[float]]:
    """Every adapter's latencies (ms, sorted), measured in turns: all the
    idle workers at once, the producer going round the adapters ``BLOCK``
    jobs at a time (the order rotating each round), so each adapter's jobs
    are spread over the same minutes as LISTEN's."""
    n, gap, warmup = sizes.wakeup_notify_n, sizes.wakeup_gap_s, 10
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        adapters = [_Adapter(stack, dbs, kind, tmp) for _, kind in ADAPTERS]
        for adapter in adapters:
            adapter.worker.go()
        time.sleep(1.5)  # connected, subscribed, idle; a broker listener counted itself alone
        order = [i for i in range(-warmup, 0)] + list(range(n))
        blocks = [order[k : k + BLOCK] for k in range(0, len(order), BLOCK)]
        next_at = time.monotonic()
        for round_no, block in enumerate(blocks):
            shift = round_no % len(adapters)
            for adapter in adapters[shift:] + adapters[:shift]:
                for i in block:
                    next_at += gap
                    adapter.start(i)
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
        for adapter in adapters:
            adapter.wait_idle()
        for adapter in adapters:
            adapter.worker.stop()
        return {adapter.kind: adapter.latencies(n) for adapter in adapters}


def run(dbs: Databases, sizes: Sizes, results: Results) -> None:
    p50: dict[str, float] = {}
    measured = _measure(dbs, sizes)
    for label, kind in ADAPTERS:
        lat = measured[kind]
        p50[label] = percentile(lat, 50)
        results.add(WORKLOAD, f"{label} p50", p50[label], "ms", False)
        results.add(WORKLOAD, f"{label} p99", percentile(lat, 99), "ms", False)
    for label in BROKER_LABELS:
        results.add(WORKLOAD, f"{label} p50 - LISTEN p50", p50[label] - p50["LISTEN/NOTIFY"], "ms", False)
        # the same comparison as a ratio (a loaded machine moves both)
        results.add(WORKLOAD, f"{label} p50 / LISTEN p50", p50[label] / p50["LISTEN/NOTIFY"], "x", False)
    results.note(
        WORKLOAD,
        f"{sizes.wakeup_notify_n} jobs {sizes.wakeup_gap_s * 1000:.0f} ms apart per notifier (+10 warm-up), "
        f"the notifiers in turns of {BLOCK} jobs (every worker idle at once), "
        "created with queuert.start_chain inside transaction_hooks(notifier); staged worker, concurrency 10; "
        "brokers with queuert.notify = 'none' on the database",
    )

