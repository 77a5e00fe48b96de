"""The engine under test, behind one Python interface, for each backend.

The engine tests (test_engine_*.py) port tests_sql/*.sql to pytest. They
call the engine's operations with Python values and compare result rows,
so the same test runs on:

* ``sqlite`` - queuert._sqlite on a WAL file, each call its own transaction
  (BEGIN IMMEDIATE ... COMMIT);
* ``sqlite-tx`` - the same inside one caller transaction for the whole test
  (each call in a SAVEPOINT), as an application would call it;
* ``postgres`` - the PL/pgSQL functions, called with named arguments in one
  transaction (each call in a savepoint), like the pgTAP suites.

A test passing on all three shows the SQLite engine behaves as the
PostgreSQL one does. Backend-specific setup lives here and in conftest.py;
the tests only use this interface (phase 2 can parameterise the client and
worker suites the same way).

``now`` is the test's fixed "now": PostgreSQL's transaction time, and a
frozen clock for SQLite (queuert._sqlite.frozen_clock). ``clock()`` is what
leases are measured against (clock_timestamp() in PostgreSQL).
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

import queuert._sqlite as qs
from queuert._sqlite._values import from_json, from_us, to_us, uuid_of
from queuert.errors import translate


def U(i: int) -> UUID:
    """The pgTAP suites' pg_temp.u(i): 00000000-0000-0000-0000-<i>."""
    return UUID(f"00000000-0000-0000-0000-{i:012d}")


def pick(row: Mapping[str, Any] | None, *keys: str) -> dict[str, Any]:
    """The named columns of a row (a row_eq of the pgTAP suites)."""
    assert row is not None, "no such row"
    return {k: row[k] for k in keys}


# Argument types of the PostgreSQL functions (tests_sql/00_schema.sql), for
# explicit casts in named-argument calls.
_PG_TYPES = {
    "type_name": "text",
    "input": "jsonb",
    "output": "jsonb",
    "id": "uuid",
    "job_id": "uuid",
    "schedule_at": "timestamptz",
    "schedule_after": "interval",
    "blockers": "uuid[]",
    "dedup_key": "text",
    "dedup_scope": "text",
    "dedup_window": "interval",
    "priority": "integer",
    "trace_context": "text",
    "items": "jsonb",
    "worker_id": "text",
    "type_names": "text[]",
    "max_jobs": "integer",
    "lease": "interval",
    "attempt": "integer",
    "job_ids": "uuid[]",
    "outputs": "jsonb[]",
    "attempts": "integer[]",
    "trace_contexts": "text[]",
    "error": "text",
    "retry_at": "timestamptz",
    "errors": "text[]",
    "retry_ats": "timestamptz[]",
    "chain_ids": "uuid[]",
    "cascade": "boolean",
    "max_attempts": "integer",
    "backoff_initial": "interval",
    "backoff_multiplier": "float8",
    "backoff_max": "interval",
    "chain_id": "uuid",
}

_JOB_TIMES = (
    "scheduled_at",
    "created_at",
    "completed_at",
    "leased_until",
    "last_attempt_at",
    "chain_completed_at",
)


def _without_blocker_trace(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """claim's blockers without what both engines add for OpenTelemetry
    (each chain's trace, when it completed, the span that completed it:
    migrations 0007 and 0008 / SQLite 0004; checked by pgTAP
    trace_context.sql and blocker_edge_trace.sql, and through ``call``,
    which keeps them, by test_engine_blocker_trace.py): ``Engine.claim``
    compares the shared contract without them."""
    for row in rows:
        for blocker in row["blockers"] or ():
            blocker.pop("trace_context", None)
            blocker.pop("completed_at", None)
            blocker.pop("resolved_trace_context", None)
    return rows


class Engine(ABC):
    """The operations of DESIGN.md plus what tests need to arrange and read."""

    name: str
    now: datetime

    @abstractmethod
    def call(self, fn: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Run engine function ``fn`` with named arguments; its result rows."""

    # -- operations ---------------------------------------------------------

    def start_chain(self, type_name: Any, **kw: Any) -> dict[str, Any]:
        return self.call("start_chain", type_name=type_name, **kw)[0]

    def start_chains(self, items: Any) -> list[dict[str, Any]]:
        return self.call("start_chains", items=items)

    def claim(self, worker_id: Any, type_names: Any = None, max_jobs: Any = 1, lease: Any = None) -> list[dict[str, Any]]:
        rows = self.call("claim", worker_id=worker_id, type_names=type_names, max_jobs=max_jobs, lease=lease)
        return _without_blocker_trace(rows)

    def complete(self, job_id: Any, worker_id: Any, output: Any = None, attempt: Any = None) -> dict[str, Any]:
        return self.call("complete", job_id=job_id, worker_id=worker_id, output=output, attempt=attempt)[0]

    def complete_jobs(self, worker_id: Any, job_ids: Any, outputs: Any = None, attempts: Any = None) -> list[dict[str, Any]]:
        return self.call("complete_jobs", worker_id=worker_id, job_ids=job_ids, outputs=outputs, attempts=attempts)

    def continue_with(self, job_id: Any, worker_id: Any, type_name: Any, **kw: Any) -> dict[str, Any]:
        return self.call("continue_with", job_id=job_id, worker_id=worker_id, type_name=type_name, **kw)[0]

    def fail(self, job_id: Any, worker_id: Any, error: Any, retry_at: Any = None, attempt: Any = None) -> dict[str, Any]:
        return self.call("fail", job_id=job_id, worker_id=worker_id, error=error, retry_at=retry_at, attempt=attempt)[0]

    def fail_jobs(self, worker_id: Any, job_ids: Any, errors: Any, retry_ats: Any = None, attempts: Any = None) -> list[dict[str, Any]]:
        return self.call(
            "fail_jobs", worker_id=worker_id, job_ids=job_ids, errors=errors, retry_ats=retry_ats, attempts=attempts
        )

    def renew_leases(self, worker_id: Any, job_ids: Any, lease: Any = None) -> list[dict[str, Any]]:
        return self.call("renew_leases", worker_id=worker_id, job_ids=job_ids, lease=lease)

    def release_jobs(self, worker_id: Any, job_ids: Any, attempts: Any = None) -> list[dict[str, Any]]:
        return self.call("release_jobs", worker_id=worker_id, job_ids=job_ids, attempts=attempts)

    def reap(self, max_jobs: Any = 100) -> list[dict[str, Any]]:
        return self.call("reap", max_jobs=max_jobs)

    @abstractmethod
    def next_due_at(self, type_names: Any = None) -> datetime | None:
        """When the next pending job of these types becomes due."""

    def trigger_jobs(self, job_ids: Any) -> list[UUID]:
        return [r["job_id"] for r in self.call("trigger_jobs", job_ids=job_ids)]

    def retry_jobs(self, job_ids: Any) -> list[UUID]:
        return [r["job_id"] for r in self.call("retry_jobs", job_ids=job_ids)]

    def cancel_chains(self, chain_ids: Any, cascade: Any = False) -> list[UUID]:
        return [r["chain_id"] for r in self.call("cancel_chains", chain_ids=chain_ids, cascade=cascade)]

    def delete_chains(self, chain_ids: Any, cascade: Any = False) -> list[UUID]:
        return [r["chain_id"] for r in self.call("delete_chains", chain_ids=chain_ids, cascade=cascade)]

    def set_job_type(self, type_name: Any, **kw: Any) -> dict[str, Any]:
        return self.call("set_job_type", type_name=type_name, **kw)[0]

    @abstractmethod
    def chain(self, chain_id: UUID) -> dict[str, Any] | None:
        """The chain view's row of this chain, or None."""

    @abstractmethod
    def chains(self) -> list[dict[str, Any]]:
        """Every row of the chain view, by chain_id."""

    def chain_jobs(self, chain_id: Any) -> list[dict[str, Any]]:
        return self.call("chain_jobs", chain_id=chain_id)

    @abstractmethod
    def stats(self) -> list[dict[str, Any]]:
        """The stats rows, by type and status."""

    # -- arranging and reading state directly ---------------------------------

    @abstractmethod
    def clock(self) -> datetime:
        """What leases are measured against: clock_timestamp(), the frozen clock."""

    @abstractmethod
    def job(self, job_id: UUID) -> dict[str, Any] | None:
        """The whole job row (open_blockers and chain_completed_at too)."""

    @abstractmethod
    def jobs(self) -> list[dict[str, Any]]:
        """Every job row, in seq order."""

    @abstractmethod
    def set_job(self, job_id: UUID, **fields: Any) -> None:
        """Write columns of a job directly, to arrange a state (as the pgTAP suites do)."""

    @abstractmethod
    def edges(self, job_id: UUID | None = None) -> list[tuple[UUID, int, UUID]]:
        """(job_id, position, blocker_chain_id) rows, by job and position."""

    @abstractmethod
    def edge_traces(self, job_id: UUID) -> list[tuple[str | None, str | None]]:
        """(trace_context, resolved_trace_context) of a job's edges, by position."""

    @abstractmethod
    def job_types(self) -> list[dict[str, Any]]:
        """Every job_type row (its policy columns), by type name."""


class SqliteEngine(Engine):
    def __init__(self, conn: sqlite3.Connection, now: datetime, name: str) -> None:
        self.conn = conn
        self.now = now
        self.name = name

    def call(self, fn: str, **kwargs: Any) -> list[dict[str, Any]]:
        result = getattr(qs, fn)(self.conn, **kwargs)
        return result if isinstance(result, list) else [result]

    def next_due_at(self, type_names: Any = None) -> datetime | None:
        return qs.next_due_at(self.conn, type_names)

    def chain(self, chain_id: UUID) -> dict[str, Any] | None:
        return qs.chain(self.conn, chain_id)

    def chains(self) -> list[dict[str, Any]]:
        return sorted(qs.list_chains(self.conn, limit=100_000), key=lambda c: c["chain_id"])

    def stats(self) -> list[dict[str, Any]]:
        return qs.stats(self.conn)

    def clock(self) -> datetime:
        return qs._values.from_us(qs._values.now_us())  # type: ignore[return-value]

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        out = []
        for values in cur.fetchall():
            row = dict(zip(names, values))
            for key in ("id", "chain_id", "continued_to"):
                if key in row:
                    row[key] = uuid_of(row[key])
            for key in ("input", "output"):
                if key in row:
                    row[key] = from_json(row[key])
            for key in _JOB_TIMES:
                if key in row:
                    row[key] = from_us(row[key])
            out.append(row)
        return out

    def job(self, job_id: UUID) -> dict[str, Any] | None:
        found = self._rows("SELECT * FROM queuert_job WHERE id = ?", (str(job_id),))
        return found[0] if found else None

    def jobs(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM queuert_job ORDER BY seq")

    def set_job(self, job_id: UUID, **fields: Any) -> None:
        values = [
            to_us(v) if isinstance(v, datetime) else str(v) if isinstance(v, UUID) else v for v in fields.values()
        ]
        assignments = ", ".join(f"{k} = ?" for k in fields)
        self.conn.execute(f"UPDATE queuert_job SET {assignments} WHERE id = ?", (*values, str(job_id)))

    def edges(self, job_id: UUID | None = None) -> list[tuple[UUID, int, UUID]]:
        rows = self.conn.execute(
            "SELECT job_id, position, blocker_chain_id FROM queuert_job_blocker"
            " WHERE ? IS NULL OR job_id = ? ORDER BY job_id, position",
            (None if job_id is None else str(job_id),) * 2,
        ).fetchall()
        return [(UUID(j), p, UUID(b)) for j, p, b in rows]

    def edge_traces(self, job_id: UUID) -> list[tuple[str | None, str | None]]:
        return [
            (r[0], r[1])
            for r in self.conn.execute(
                "SELECT trace_context, resolved_trace_context FROM queuert_job_blocker WHERE job_id = ? ORDER BY position",
                (str(job_id),),
            )
        ]

    def job_types(self) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT type_name, max_attempts, backoff_initial, backoff_multiplier, backoff_max, lease"
            " FROM queuert_job_type ORDER BY type_name"
        )
        return [
            {
                "type_name": t,
                "max_attempts": m,
                "backoff_initial": timedelta(microseconds=i),
                "backoff_multiplier": float(k),
                "backoff_max": timedelta(microseconds=x),
                "lease": timedelta(microseconds=lease),
            }
            for t, m, i, k, x, lease in cur.fetchall()
        ]


class PostgresEngine(Engine):
    name = "postgres"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.now = self._scalar("SELECT now()")

    def _scalar(self, sql: str, params: Any = None) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        try:
            with self.conn.transaction():
                yield
        except psycopg.Error as e:
            new = translate(e)
            if new is e:
                raise
            raise new from e

    def _dict_rows(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        with self._savepoint(), self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    @staticmethod
    def _value(name: str, value: Any) -> Any:
        if name in ("input", "output", "items") and value is not None:
            return Jsonb(value)
        if name == "outputs" and value is not None:
            return [None if v is None else Jsonb(v) for v in value]
        return value

    def call(self, fn: str, **kwargs: Any) -> list[dict[str, Any]]:
        args = ", ".join(f'"{k}" => %({k})s::{_PG_TYPES[k]}' for k in kwargs)
        params = {k: self._value(k, v) for k, v in kwargs.items()}
        rows = self._dict_rows(f"SELECT * FROM queuert.{fn}({args})", params)
        for row in rows:
            if "status" in row and row["status"] is not None:
                row["status"] = str(row["status"])
        if fn == "start_chains":
            rows.sort(key=lambda r: r["ord"])
        if fn == "chain_jobs":
            for row in rows:
                row.pop("seq", None)
        # What only PostgreSQL's engine reports, for OpenTelemetry (migrations
        # 0007 and 0008, DESIGN.md Additions; pgTAP trace_context.sql,
        # blocker_edge_trace.sql and start_chains_dedup_trace.sql check it):
        # the shared contract is compared without it.
        if fn in ("start_chain", "start_chains"):
            for row in rows:
                row.pop("trace_context", None)
        if fn in ("complete", "complete_jobs") and "trace_context" not in kwargs and "trace_contexts" not in kwargs:
            for row in rows:
                row.pop("dependents", None)
        return rows

    def next_due_at(self, type_names: Any = None) -> datetime | None:
        rows = self._dict_rows("SELECT queuert.next_due_at(%s::text[]) AS t", (type_names,))
        return rows[0]["t"]  # type: ignore[no-any-return]

    def chain(self, chain_id: UUID) -> dict[str, Any] | None:
        rows = self._dict_rows("SELECT * FROM queuert.chain WHERE chain_id = %s", (chain_id,))
        for row in rows:
            row["status"] = str(row["status"])
        return rows[0] if rows else None

    def chains(self) -> list[dict[str, Any]]:
        rows = self._dict_rows("SELECT * FROM queuert.chain ORDER BY chain_id::text")
        for row in rows:
            row["status"] = str(row["status"])
        return rows

    def stats(self) -> list[dict[str, Any]]:
        rows = self._dict_rows(
            "SELECT type_name, status::text AS status, count, oldest_due_age FROM queuert.stats"
            " ORDER BY type_name, status::text"
        )
        return rows

    def clock(self) -> datetime:
        return self._scalar("SELECT clock_timestamp()")  # type: ignore[no-any-return]

    def job(self, job_id: UUID) -> dict[str, Any] | None:
        rows = self._dict_rows("SELECT * FROM queuert.job WHERE id = %s", (job_id,))
        for row in rows:
            row["status"] = str(row["status"])
        return rows[0] if rows else None

    def jobs(self) -> list[dict[str, Any]]:
        rows = self._dict_rows("SELECT * FROM queuert.job ORDER BY seq")
        for row in rows:
            row["status"] = str(row["status"])
        return rows

    def set_job(self, job_id: UUID, **fields: Any) -> None:
        casts = {"status": "::queuert.job_status", "input": "::jsonb", "output": "::jsonb"}
        assignments = ", ".join(f"{k} = %({k})s{casts.get(k, '')}" for k in fields)
        params = {k: Jsonb(v) if k in ("input", "output") and v is not None else v for k, v in fields.items()}
        self._dict_rows(f"UPDATE queuert.job SET {assignments} WHERE id = %(job_id__)s", {**params, "job_id__": job_id})

    def edges(self, job_id: UUID | None = None) -> list[tuple[UUID, int, UUID]]:
        rows = self._dict_rows(
            "SELECT job_id, position, blocker_chain_id FROM queuert.job_blocker"
            " WHERE %(j)s::uuid IS NULL OR job_id = %(j)s::uuid ORDER BY job_id::text, position",
            {"j": job_id},
        )
        return [(r["job_id"], r["position"], r["blocker_chain_id"]) for r in rows]

    def edge_traces(self, job_id: UUID) -> list[tuple[str | None, str | None]]:
        rows = self._dict_rows(
            "SELECT trace_context, resolved_trace_context FROM queuert.job_blocker"
            " WHERE job_id = %(j)s::uuid ORDER BY position",
            {"j": job_id},
        )
        return [(r["trace_context"], r["resolved_trace_context"]) for r in rows]

    def job_types(self) -> list[dict[str, Any]]:
        return self._dict_rows(
            "SELECT type_name, max_attempts, backoff_initial, backoff_multiplier, backoff_max, lease"
            " FROM queuert.job_type ORDER BY type_name"
        )


def sqlite_engine_factory(path: str, name: str) -> Callable[[], Iterator[Engine]]:
    """A generator that yields an SqliteEngine with a frozen clock, in one
    caller transaction for ``sqlite-tx``."""

    def make() -> Iterator[Engine]:
        qs.migrate(path)
        conn = qs.connect(path)
        now = datetime.now(timezone.utc).replace(microsecond=123456)
        try:
            with qs.frozen_clock(now):
                if name == "sqlite-tx":
                    conn.execute("BEGIN IMMEDIATE")
                yield SqliteEngine(conn, now, name)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        finally:
            conn.close()

    return make
