"""Assertions about the chains your code started (rivertest's RequireInserted,
Oban's assert_enqueued): read ``<schema>.job`` through your own connection,
so chains started in a transaction that is still open are seen.

"In this transaction" means created by the transaction the connection is in
now: root jobs whose ``created_at`` equals the transaction's ``now()`` (a
transaction's start time, shared by its savepoints, which is also the value
``start_chain`` stores), so chains committed earlier by the same test do not
count. By default (``in_transaction=None``) that is what is checked when the
connection is inside a transaction, and every chain of the database
otherwise (an autocommit connection).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from queuert.types import Job, JobType, dump_payload

__all__ = [
    "ANY",
    "assert_chain_started",
    "assert_no_chain_started",
    "astarted_chains",
    "aassert_chain_started",
    "aassert_no_chain_started",
    "started_chains",
]


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: matches any input (the default of ``input=``)
ANY: Any = _Any()


def _in_transaction(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], in_transaction: bool | None
) -> bool:
    if in_transaction is not None:
        return in_transaction
    return conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.ACTIVE)


def _query(
    job_type: JobType[Any, Any] | str | None,
    input: Any,
    input_contains: Any,
    in_transaction: bool,
    schema: str,
) -> tuple[sql.Composed, list[Any]]:
    where = [sql.SQL("chain_index = 0")]
    params: list[Any] = []
    if job_type is not None:
        where.append(sql.SQL("type_name = %s"))
        params.append(job_type.name if isinstance(job_type, JobType) else job_type)
    if input is not ANY:
        where.append(sql.SQL("input IS NOT DISTINCT FROM %s"))
        dumped = dump_payload(job_type, input) if job_type is not None else input
        params.append(None if dumped is None else Jsonb(dumped))
    if input_contains is not None:
        where.append(sql.SQL("input @> %s"))
        params.append(Jsonb(input_contains))
    if in_transaction:
        where.append(sql.SQL("created_at = now()"))
    query = sql.SQL("SELECT * FROM {}.job WHERE {} ORDER BY seq").format(
        sql.Identifier(schema), sql.SQL(" AND ").join(where)
    )
    return query, params


def started_chains(
    conn: psycopg.Connection[Any],
    job_type: JobType[Any, Any] | str | None = None,
    *,
    input: Any = ANY,
    input_contains: Any = None,
    in_transaction: bool | None = None,
    schema: str = "queuert",
) -> list[Job]:
    """Root jobs (one per chain) matching the filters, in creation order.

    ``input``: exact match, after validation and serialisation with the job
    type (so a dataclass or model compares with what was stored);
    ``input_contains``: JSON containment (``@>``), for a partial dict.
    """
    query, params = _query(
        job_type, input, input_contains, _in_transaction(conn, in_transaction), schema
    )
    with conn.cursor(row_factory=dict_row) as cur:
        return [Job.from_row(r) for r in cur.execute(query, params).fetchall()]


async def astarted_chains(
    conn: psycopg.AsyncConnection[Any],
    job_type: JobType[Any, Any] | str | None = None,
    *,
    input: Any = ANY,
    input_contains: Any = None,
    in_transaction: bool | None = None,
    schema: str = "queuert",
) -> list[Job]:
    """:func:`started_chains` on an ``AsyncConnection``."""
    query, params = _query(
        job_type, input, input_contains, _in_transaction(conn, in_transaction), schema
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return [Job.from_row(r) for r in await cur.fetchall()]


def _what(job_type: JobType[Any, Any] | str | None, input: Any, contains: Any, tx: bool) -> str:
    name = job_type.name if isinstance(job_type, JobType) else job_type
    what = f"chain of type {name!r}" if name else "chain"
    if input is not ANY:
        what += f" with input {input!r}"
    if contains is not None:
        what += f" with input containing {contains!r}"
    return what + (" started in this transaction" if tx else " started")


def _listed(jobs: list[Job]) -> str:
    return repr([(j.type_name, j.input) for j in jobs])


def _expect(found: list[Job], count: int | None, what: str, everything: list[Job]) -> Job:
    if found and (count is None or len(found) == count):
        return found[-1]
    times = "" if count is None else f" {count} time(s)"
    raise AssertionError(
        f"expected a {what}{times}, found {len(found)}; "
        f"chains started there (type, input): {_listed(everything)}"
    )


def _expect_none(found: list[Job], what: str) -> None:
    if found:
        raise AssertionError(f"expected no {what}, found {_listed(found)}")


def assert_chain_started(
    conn: psycopg.Connection[Any],
    job_type: JobType[Any, Any] | str,
    input: Any = ANY,
    *,
    input_contains: Any = None,
    count: int | None = None,
    in_transaction: bool | None = None,
    schema: str = "queuert",
) -> Job:
    """Assert a chain of ``job_type`` (with ``input``) was started; returns
    its root job (the latest, if several). ``count``: exactly that many."""
    tx = _in_transaction(conn, in_transaction)
    found = started_chains(
        conn, job_type, input=input, input_contains=input_contains, in_transaction=tx, schema=schema
    )
    everything = [] if found else started_chains(conn, in_transaction=tx, schema=schema)
    return _expect(found, count, _what(job_type, input, input_contains, tx), everything)


def assert_no_chain_started(
    conn: psycopg.Connection[Any],
    job_type: JobType[Any, Any] | str | None = None,
    input: Any = ANY,
    *,
    input_contains: Any = None,
    in_transaction: bool | None = None,
    schema: str = "queuert",
) -> None:
    """Assert no chain of ``job_type`` (with ``input``; any type if None) was started."""
    tx = _in_transaction(conn, in_transaction)
    found = started_chains(
        conn, job_type, input=input, input_contains=input_contains, in_transaction=tx, schema=schema
    )
    _expect_none(found, _what(job_type, input, input_contains, tx))


async def aassert_chain_started(
    conn: psycopg.AsyncConnection[Any],
    job_type: JobType[Any, Any] | str,
    input: Any = ANY,
    *,
    input_contains: Any = None,
    count: int | None = None,
    in_transaction: bool | None = None,
    schema: str = "queuert",
) -> Job:
    """:func:`assert_chain_started` on an ``AsyncConnection``."""
    tx = _in_transaction(conn, in_transaction)
    found = await astarted_chains(
        conn, job_type, input=input, input_contains=input_contains, in_transaction=tx, schema=schema
    )
    everything = [] if found else await astarted_chains(conn, in_transaction=tx, schema=schema)
    return _expect(found, count, _what(job_type, input, input_contains, tx), everything)


async def aassert_no_chain_started(
    conn: psycopg.AsyncConnection[Any],
    job_type: JobType[Any, Any] | str | None = None,
    input: Any = ANY,
    *,
    input_contains: Any = None,
    in_transaction: bool | None = None,
    schema: str = "queuert",
) -> None:
    """:func:`assert_no_chain_started` on an ``AsyncConnection``."""
    tx = _in_transaction(conn, in_transaction)
    found = await astarted_chains(
        conn, job_type, input=input, input_contains=input_contains, in_transaction=tx, schema=schema
    )
    _expect_none(found, _what(job_type, input, input_contains, tx))
