"""The worker of test_sqlite_worker_processes.py, one per process:

    queuert worker worker_app:worker --dsn sqlite:///FILE

Environment: ``APP_DB`` (the file), ``APP_MODE`` (staged or atomic),
``APP_CONCURRENCY``. Every run of a handler is recorded in ``app_run``
(staged: on a connection of its own; atomic: in the job's transaction, so
only the attempt that committed is there), with the lease the worker holds while it runs
(``job.leased_until``) and when the run began and ended (epoch
microseconds), so the test can see whether two runs of one job overlapped
while a lease was valid. Each run also writes ``app_touch`` the same way: every
process keeps taking the file's single write lock.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from typing import Any

import queuert

DB = os.environ["APP_DB"]
MODE = os.environ.get("APP_MODE", "staged")

worker = queuert.Worker(
    f"sqlite:///{DB}",
    mode=MODE,  # type: ignore[arg-type]
    concurrency=int(os.environ.get("APP_CONCURRENCY", "4")),
    lease=5.0,
    poll_interval=0.1,
    reap_interval=0.5,
)

_tls = threading.local()


def _side() -> sqlite3.Connection:
    conn = getattr(_tls, "conn", None)
    if conn is None:
        conn = _tls.conn = sqlite3.connect(DB, timeout=30, isolation_level=None)
    return conn


def _now_us() -> int:
    return time.time_ns() // 1000


def _run(job: queuert.JobContext[Any]) -> None:
    began = _now_us()
    until = int(job.leased_until.timestamp() * 1_000_000) if job.leased_until is not None else None
    # atomic mode: the job's transaction holds the file's write lock, so
    # every write goes through it (another connection of this process
    # would wait for that lock until its busy timeout)
    conn = job.conn if MODE == "atomic" else _side()
    conn.execute("INSERT INTO app_touch (job_id, worker) VALUES (?, ?)", (str(job.id), job.worker_id))
    time.sleep(random.uniform(0, 0.004))
    conn.execute(
        "INSERT INTO app_run (job_id, attempt, worker, began, ended, leased_until) VALUES (?, ?, ?, ?, ?, ?)",
        (str(job.id), job.attempt, job.worker_id, began, _now_us(), until),
    )


@worker.handler("p.first")
def first(job: queuert.JobContext[Any]) -> Any:
    _run(job)
    return job.continue_with("p.last", {"n": job.input["n"]})


@worker.handler("p.last")
def last(job: queuert.JobContext[Any]) -> Any:
    _run(job)
    return {"n": job.input["n"], "worker": job.worker_id, "attempt": job.attempt}


@worker.handler("p.join")
def join(job: queuert.JobContext[Any]) -> Any:
    _run(job)
    return {"blockers": len(job.blockers), "worker": job.worker_id, "attempt": job.attempt}
