"""The asyncio client: :mod:`queuert.client`'s API as coroutines over a psycopg 3
``AsyncConnection``.

Same rules: every coroutine runs in the connection's current transaction and
never begins, commits or rolls back one; on an autocommit connection outside a
transaction block a serialization failure or deadlock is retried. Statements,
parameters, row mapping and hook calls are shared with the sync client
(:mod:`queuert._core`); only the execution is async here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload
from uuid import UUID

import psycopg
from psycopg.rows import dict_row, tuple_row

from . import _core
from ._sqltext import has_rows
from .client import _can_listen
from .errors import InvalidArgumentError, is_conflict, translate
from .types import (
    BaseChainSpec,
    Chain,
    ChainPage,
    CompletedJob,
    Continuation,
    JobType,
    StartedChain,
)

__all__ = [
    "cancel_chains",
    "complete_chain",
    "delete_chains",
    "get_chain",
    "list_chains",
    "retry_jobs",
    "start_chain",
    "start_chains",
    "trigger_jobs",
    "wait_for_chain",
]

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741

_AUTO_RETRIES = 5


async def _execute(conn: psycopg.AsyncConnection[Any], query: _core.Query) -> list[Any]:
    try:
        async with conn.cursor(row_factory=tuple_row if query.tuples else dict_row) as cur:
            await cur.execute(query.sql, query.params)
            return await cur.fetchall() if has_rows(cur) else []
    except psycopg.Error as e:
        new = translate(e)
        if new is e:
            raise
        raise new from e


async def _perform(conn: psycopg.AsyncConnection[Any], instr: Any) -> Any:
    if isinstance(instr, _core.Query):
        return await _execute(conn, instr)
    if isinstance(instr, _core.WaitNotify):
        async for note in conn.notifies(timeout=instr.timeout):
            if note.channel == instr.channel and note.payload == instr.payload:
                return True
        return False
    if isinstance(instr, _core.Sleep):
        await asyncio.sleep(instr.seconds)
        return None
    if isinstance(instr, _core.Cleanup):
        if not conn.closed and not conn.broken:
            await _execute(conn, instr.query)
        return None
    raise TypeError(f"unknown instruction {instr!r}")  # pragma: no cover


async def _drive(conn: psycopg.AsyncConnection[Any], op: _core.Op[T]) -> T:
    try:
        instr = next(op)
        while True:
            try:
                result = await _perform(conn, instr)
            except BaseException as e:
                instr = op.throw(e)  # lets the operation clean up, or re-raises
            else:
                instr = op.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def _run(conn: psycopg.AsyncConnection[Any], factory: _core.OpFactory[T]) -> T:
    if not isinstance(conn, psycopg.AsyncConnection):
        raise InvalidArgumentError(
            f"expected a psycopg.AsyncConnection, got {type(conn).__name__} "
            "(use queuert.client for a sync Connection)"
        )
    own_tx = _can_listen(conn)
    attempt = 0
    while True:
        try:
            return await _drive(conn, factory())
        except psycopg.Error as e:
            attempt += 1
            if not (own_tx and is_conflict(e) and attempt < _AUTO_RETRIES):
                raise
            await asyncio.sleep(0.005 * 2**attempt)


# --------------------------------------------------------------------------


@overload
async def start_chain(
    conn: psycopg.AsyncConnection[Any],
    job_type: JobType[None, Any],
    *,
    id: UUID | str | None = None,
    schedule_at: datetime | None = None,
    schedule_after: timedelta | None = None,
    blockers: Sequence[UUID | str] | None = None,
    dedup_key: str | None = None,
    dedup_scope: str = "incomplete",
    dedup_window: timedelta | None = None,
    priority: int = 0,
    trace_context: str | None = None,
    schema: str = "queuert",
) -> StartedChain: ...


@overload
async def start_chain(
    conn: psycopg.AsyncConnection[Any],
    job_type: JobType[I, Any],
    input: I,
    *,
    id: UUID | str | None = None,
    schedule_at: datetime | None = None,
    schedule_after: timedelta | None = None,
    blockers: Sequence[UUID | str] | None = None,
    dedup_key: str | None = None,
    dedup_scope: str = "incomplete",
    dedup_window: timedelta | None = None,
    priority: int = 0,
    trace_context: str | None = None,
    schema: str = "queuert",
) -> StartedChain: ...


@overload
async def start_chain(
    conn: psycopg.AsyncConnection[Any],
    job_type: str,
    input: Any = None,
    *,
    id: UUID | str | None = None,
    schedule_at: datetime | None = None,
    schedule_after: timedelta | None = None,
    blockers: Sequence[UUID | str] | None = None,
    dedup_key: str | None = None,
    dedup_scope: str = "incomplete",
    dedup_window: timedelta | None = None,
    priority: int = 0,
    trace_context: str | None = None,
    schema: str = "queuert",
) -> StartedChain: ...


async def start_chain(
    conn: psycopg.AsyncConnection[Any],
    job_type: JobType[Any, Any] | str,
    input: Any = None,
    *,
    id: UUID | str | None = None,
    schedule_at: datetime | None = None,
    schedule_after: timedelta | None = None,
    blockers: Sequence[UUID | str] | None = None,
    dedup_key: str | None = None,
    dedup_scope: str = "incomplete",
    dedup_window: timedelta | None = None,
    priority: int = 0,
    trace_context: str | None = None,
    schema: str = "queuert",
) -> StartedChain:
    """Async :func:`queuert.client.start_chain`."""
    return await _run(
        conn,
        _core.start_chain(
            schema,
            job_type,
            input,
            id=id,
            schedule_at=schedule_at,
            schedule_after=schedule_after,
            blockers=blockers,
            dedup_key=dedup_key,
            dedup_scope=dedup_scope,
            dedup_window=dedup_window,
            priority=priority,
            trace_context=trace_context,
        ),
    )


async def start_chains(
    conn: psycopg.AsyncConnection[Any],
    items: Sequence[BaseChainSpec],
    *,
    schema: str = "queuert",
) -> list[StartedChain]:
    """Async :func:`queuert.client.start_chains`."""
    return await _run(conn, _core.start_chains(schema, items))


@overload
async def complete_chain(
    conn: psycopg.AsyncConnection[Any],
    chain_id: UUID | str,
    output: O,
    *,
    job_type: JobType[Any, O],
    job_id: UUID | str | None = None,
    schema: str = "queuert",
) -> CompletedJob: ...


@overload
async def complete_chain(
    conn: psycopg.AsyncConnection[Any],
    chain_id: UUID | str,
    output: Any = None,
    *,
    job_type: str | None = None,
    job_id: UUID | str | None = None,
    schema: str = "queuert",
) -> CompletedJob: ...


@overload
async def complete_chain(
    conn: psycopg.AsyncConnection[Any],
    chain_id: UUID | str,
    output: None = None,
    *,
    continue_with: Continuation,
    job_type: JobType[Any, Any] | str | None = None,
    job_id: UUID | str | None = None,
    schema: str = "queuert",
) -> CompletedJob: ...


async def complete_chain(
    conn: psycopg.AsyncConnection[Any],
    chain_id: UUID | str,
    output: Any = None,
    *,
    continue_with: Continuation | None = None,
    job_type: JobType[Any, Any] | str | None = None,
    job_id: UUID | str | None = None,
    schema: str = "queuert",
) -> CompletedJob:
    """Async :func:`queuert.client.complete_chain`."""
    return await _run(
        conn,
        _core.complete_chain(
            schema,
            chain_id,
            output,
            continue_with=continue_with,
            job_type=job_type,
            job_id=job_id,
        ),
    )


async def cancel_chains(
    conn: psycopg.AsyncConnection[Any],
    chain_ids: Iterable[UUID | str],
    *,
    cascade: bool = False,
    schema: str = "queuert",
) -> list[UUID]:
    """Async :func:`queuert.client.cancel_chains`."""
    return await _run(conn, _core.chain_op(schema, "cancel_chains", chain_ids, cascade))


async def delete_chains(
    conn: psycopg.AsyncConnection[Any],
    chain_ids: Iterable[UUID | str],
    *,
    cascade: bool = False,
    schema: str = "queuert",
) -> list[UUID]:
    """Async :func:`queuert.client.delete_chains`."""
    return await _run(conn, _core.chain_op(schema, "delete_chains", chain_ids, cascade))


async def trigger_jobs(
    conn: psycopg.AsyncConnection[Any],
    job_ids: Iterable[UUID | str],
    *,
    schema: str = "queuert",
) -> list[UUID]:
    """Async :func:`queuert.client.trigger_jobs`."""
    return await _run(conn, _core.job_op(schema, "trigger_jobs", job_ids))


async def retry_jobs(
    conn: psycopg.AsyncConnection[Any],
    job_ids: Iterable[UUID | str],
    *,
    schema: str = "queuert",
) -> list[UUID]:
    """Async :func:`queuert.client.retry_jobs`."""
    return await _run(conn, _core.job_op(schema, "retry_jobs", job_ids))


async def get_chain(
    conn: psycopg.AsyncConnection[Any], chain_id: UUID | str, *, schema: str = "queuert"
) -> Chain:
    """Async :func:`queuert.client.get_chain`."""
    return await _run(conn, _core.get_chain(schema, chain_id))


async def list_chains(
    conn: psycopg.AsyncConnection[Any],
    *,
    type_name: str | JobType[Any, Any] | None = None,
    status: str | Sequence[str] | None = None,
    limit: int = 50,
    after: str | None = None,
    schema: str = "queuert",
) -> ChainPage:
    """Async :func:`queuert.client.list_chains`."""
    return await _run(
        conn,
        _core.list_chains(schema, type_name=type_name, status=status, limit=limit, after=after),
    )


async def wait_for_chain(
    conn: psycopg.AsyncConnection[Any],
    chain_id: UUID | str,
    timeout: float,
    *,
    poll_interval: float = 1.0,
    raise_on_failure: bool = True,
    schema: str = "queuert",
) -> Chain:
    """Async :func:`queuert.client.wait_for_chain` (same connection rules)."""
    return await _run(
        conn,
        _core.wait_for_chain(
            schema,
            chain_id,
            timeout,
            poll_interval=poll_interval,
            raise_on_failure=raise_on_failure,
            can_listen=isinstance(conn, psycopg.AsyncConnection) and _can_listen(conn),
        ),
    )
