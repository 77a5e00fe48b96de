"""The database behind the client behaviour suite, once per backend.

The client tests (test_client.py, test_client_async.py) take a ``db``
fixture (conftest.py) parameterised over ``postgres`` (a fresh database
migrated like every other test's) and ``sqlite`` (a fresh WAL file
migrated by queuert._sqlite), and call the public client on the
connections it makes. What a test needs besides the client (reading the
job table, an application table, the engine calls a worker would make)
goes through this interface, so that one test states one behaviour for
both backends.

A test that only one backend can pass is marked
``@pytest.mark.backend("postgres", reason=...)``: the other backend's case
is deselected and the session header names it with its reason.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

import queuert._sqlite as qs
from queuert._sqlite._values import from_json, from_us

Conn = Any  # a psycopg.Connection or a sqlite3.Connection

_TIMES = ("scheduled_at", "created_at", "completed_at", "leased_until", "last_attempt_at")


class Db(ABC):
    """One test's database."""

    name: str
    target: str  # the DSN, or the SQLite file's path

    @abstractmethod
    def connect(self, autocommit: bool = False) -> Conn:
        """A new connection: its writes begin a transaction the test commits
        (psycopg without autocommit, sqlite3 in Python's default mode), or
        each call is its own transaction (``autocommit``)."""

    @abstractmethod
    def execute(self, conn: Conn, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run the application's own SQL (``%s`` placeholders) on ``conn``."""

    @abstractmethod
    def jobs(self, conn: Conn | None = None) -> list[dict[str, Any]]:
        """Every job row (status as text, payloads decoded, times as
        datetimes), in seq order: on ``conn`` (its own uncommitted writes
        too), else what is committed."""

    @abstractmethod
    def in_transaction(self, conn: Conn) -> bool:
        """Whether ``conn`` is inside a transaction now."""

    @abstractmethod
    def fixed_now(self, conn: Conn) -> AbstractContextManager[datetime]:
        """Within the block, the engine's "now" on ``conn`` is the yielded
        time (PostgreSQL: the transaction's now(); SQLite: a frozen clock)."""

    # engine calls a worker or an operator makes (not in the client)
    @abstractmethod
    def claim(self, conn: Conn, worker_id: str) -> list[dict[str, Any]]:
        """The engine's claim() of one job, as a worker."""

    @abstractmethod
    def fail(self, conn: Conn, job_id: UUID, worker_id: str, error: str) -> None:
        """The engine's fail(), as the worker holding the job."""

    @abstractmethod
    def complete_as(self, conn: Conn, job_id: UUID, worker_id: str) -> None:
        """The engine's complete() as a worker (raises queuert's errors)."""

    @abstractmethod
    def set_job_type(self, conn: Conn, type_name: str, max_attempts: int) -> None:
        """The engine's set_job_type()."""

    # helpers on top
    def job(self, conn: Conn | None, job_id: UUID) -> dict[str, Any]:
        found = [j for j in self.jobs(conn) if j["id"] == job_id]
        assert found, f"no job {job_id}"
        return found[0]

    def count_jobs(self, conn: Conn | None = None) -> int:
        return len(self.jobs(conn))


class PostgresDb(Db):
    name = "postgres"

    def __init__(self, dsn: str) -> None:
        self.target = dsn

    def connect(self, autocommit: bool = False) -> Conn:
        return psycopg.connect(self.target, autocommit=autocommit)

    def execute(self, conn: Conn, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []

    def jobs(self, conn: Conn | None = None) -> list[dict[str, Any]]:
        sql = "SELECT *, status::text AS status FROM queuert.job ORDER BY seq"
        if conn is not None:
            with conn.cursor(row_factory=dict_row) as cur:
                return list(cur.execute(sql).fetchall())
        with psycopg.connect(self.target) as other, other.cursor(row_factory=dict_row) as cur:
            return list(cur.execute(sql).fetchall())

    def in_transaction(self, conn: Conn) -> bool:
        return bool(conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE)

    @contextmanager
    def fixed_now(self, conn: Conn) -> Iterator[datetime]:
        row = conn.execute("SELECT now()").fetchone()
        yield row[0]

    def claim(self, conn: Conn, worker_id: str) -> list[dict[str, Any]]:
        with conn.cursor(row_factory=dict_row) as cur:
            return list(cur.execute("SELECT * FROM queuert.claim(worker_id => %s)", (worker_id,)).fetchall())

    def fail(self, conn: Conn, job_id: UUID, worker_id: str, error: str) -> None:
        conn.execute(
            "SELECT * FROM queuert.fail(job_id => %s, worker_id => %s, error => %s)", (job_id, worker_id, error)
        ).fetchall()

    def complete_as(self, conn: Conn, job_id: UUID, worker_id: str) -> None:
        from queuert import translate_errors

        with translate_errors():
            conn.execute("SELECT * FROM queuert.complete(job_id => %s, worker_id => %s)", (job_id, worker_id))

    def set_job_type(self, conn: Conn, type_name: str, max_attempts: int) -> None:
        conn.execute("SELECT queuert.set_job_type(%s, max_attempts => %s)", (type_name, max_attempts))


class SqliteDb(Db):
    name = "sqlite"

    def __init__(self, path: str) -> None:
        self.target = path
        qs.migrate(path)

    def connect(self, autocommit: bool = False) -> Conn:
        return sqlite3.connect(self.target, isolation_level=None if autocommit else "")

    def execute(self, conn: Conn, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return list(conn.execute(sql.replace("%s", "?"), params).fetchall())

    def jobs(self, conn: Conn | None = None) -> list[dict[str, Any]]:
        reader = conn if conn is not None else sqlite3.connect(self.target)
        try:
            cur = reader.cursor()
            cur.row_factory = None
            cur.execute("SELECT * FROM queuert_job ORDER BY seq")
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, values)) for values in cur.fetchall()]
        finally:
            if conn is None:
                reader.close()
        for row in rows:
            for key in ("id", "chain_id", "continued_to"):
                row[key] = None if row[key] is None else UUID(row[key])
            for key in ("input", "output"):
                row[key] = from_json(row[key])
            for key in _TIMES:
                row[key] = from_us(row[key])
        return rows

    def in_transaction(self, conn: Conn) -> bool:
        return bool(conn.in_transaction)

    @contextmanager
    def fixed_now(self, conn: Conn) -> Iterator[datetime]:
        now = datetime.now(timezone.utc) - timedelta(microseconds=1)
        with qs.frozen_clock(now):
            yield now

    def claim(self, conn: Conn, worker_id: str) -> list[dict[str, Any]]:
        return qs.claim(conn, worker_id)

    def fail(self, conn: Conn, job_id: UUID, worker_id: str, error: str) -> None:
        qs.fail(conn, job_id, worker_id, error)

    def complete_as(self, conn: Conn, job_id: UUID, worker_id: str) -> None:
        qs.complete(conn, job_id, worker_id)

    def set_job_type(self, conn: Conn, type_name: str, max_attempts: int) -> None:
        qs.set_job_type(conn, type_name, max_attempts=max_attempts)
