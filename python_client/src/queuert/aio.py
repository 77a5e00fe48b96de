"""The asyncio client: :mod:`queuert.client`'s API as coroutines over an async
connection: a psycopg 3 ``AsyncConnection``, or a SQLAlchemy
``AsyncSession`` / ``AsyncConnection`` on a psycopg 3 engine
(:mod:`queuert._connections`).

Same rules: every coroutine runs in the connection's current transaction and
never begins, commits or rolls back one; on an autocommit connection outside a
transaction block a serialization failure or deadlock is retried. The calls
are written once for both clients (:mod:`queuert._operations`,
:mod:`queuert._waiting`); only the driver is async
(:func:`queuert._execution.run_async`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload
from uuid import UUID

from . import _admin_operations as admin
from . import _operations as ops
from . import _waiting
from ._connections import AsyncConnectionLike
from ._execution import run_async
from ._plain_start import start_plain_async
from ._admin_records import JobTypePolicy, PruneResult, Schedule
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
    "delete_schedule",
    "get_chain",
    "list_chains",
    "list_schedules",
    "prune",
    "retry_jobs",
    "set_job_type",
    "set_schedule",
    "start_chain",
    "start_chains",
    "trigger_jobs",
    "wait_for_chain",
]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


@overload
async def start_chain(
    conn: AsyncConnectionLike,
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
    conn: AsyncConnectionLike,
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
    conn: AsyncConnectionLike,
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
    conn: AsyncConnectionLike,
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
    if ops.at_defaults(  # the common start: straight to the connection (_plain_start)
        id, schedule_at, schedule_after, blockers, dedup_key, dedup_scope, dedup_window, priority, trace_context
    ):
        started = await start_plain_async(conn, schema, job_type, input)
        if started is not None:
            return started
    return await run_async(
        conn,
        ops.start_chain(
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
    conn: AsyncConnectionLike,
    items: Sequence[BaseChainSpec],
    *,
    schema: str = "queuert",
) -> list[StartedChain]:
    """Async :func:`queuert.client.start_chains`."""
    return await run_async(conn, ops.start_chains(schema, items))


@overload
async def complete_chain(
    conn: AsyncConnectionLike,
    chain_id: UUID | str,
    output: O,
    *,
    job_type: JobType[Any, O],
    job_id: UUID | str | None = None,
    schema: str = "queuert",
) -> CompletedJob: ...


@overload
async def complete_chain(
    conn: AsyncConnectionLike,
    chain_id: UUID | str,
    output: Any = None,
    *,
    job_type: str | None = None,
    job_id: UUID | str | None = None,
    schema: str = "queuert",
) -> CompletedJob: ...


@overload
async def complete_chain(
    conn: AsyncConnectionLike,
    chain_id: UUID | str,
    output: None = None,
    *,
    continue_with: Continuation,
    job_type: JobType[Any, Any] | str | None = None,
    job_id: UUID | str | None = None,
    schema: str = "queuert",
) -> CompletedJob: ...


async def complete_chain(
    conn: AsyncConnectionLike,
    chain_id: UUID | str,
    output: Any = None,
    *,
    continue_with: Continuation | None = None,
    job_type: JobType[Any, Any] | str | None = None,
    job_id: UUID | str | None = None,
    schema: str = "queuert",
) -> CompletedJob:
    """Async :func:`queuert.client.complete_chain`."""
    return await run_async(
        conn,
        ops.complete_chain(
            schema,
            chain_id,
            output,
            continue_with=continue_with,
            job_type=job_type,
            job_id=job_id,
        ),
    )


async def cancel_chains(
    conn: AsyncConnectionLike,
    chain_ids: Iterable[UUID | str],
    *,
    cascade: bool = False,
    schema: str = "queuert",
) -> list[UUID]:
    """Async :func:`queuert.client.cancel_chains`."""
    return await run_async(conn, ops.chain_op(schema, "cancel_chains", chain_ids, cascade))


async def delete_chains(
    conn: AsyncConnectionLike,
    chain_ids: Iterable[UUID | str],
    *,
    cascade: bool = False,
    schema: str = "queuert",
) -> list[UUID]:
    """Async :func:`queuert.client.delete_chains`."""
    return await run_async(conn, ops.chain_op(schema, "delete_chains", chain_ids, cascade))


async def trigger_jobs(
    conn: AsyncConnectionLike,
    job_ids: Iterable[UUID | str],
    *,
    schema: str = "queuert",
) -> list[UUID]:
    """Async :func:`queuert.client.trigger_jobs`."""
    return await run_async(conn, ops.job_op(schema, "trigger_jobs", job_ids))


async def retry_jobs(
    conn: AsyncConnectionLike,
    job_ids: Iterable[UUID | str],
    *,
    schema: str = "queuert",
) -> list[UUID]:
    """Async :func:`queuert.client.retry_jobs`."""
    return await run_async(conn, ops.job_op(schema, "retry_jobs", job_ids))


async def get_chain(
    conn: AsyncConnectionLike, chain_id: UUID | str, *, schema: str = "queuert"
) -> Chain:
    """Async :func:`queuert.client.get_chain`."""
    return await run_async(conn, ops.get_chain(schema, chain_id))


async def list_chains(
    conn: AsyncConnectionLike,
    *,
    type_name: str | JobType[Any, Any] | None = None,
    status: str | Sequence[str] | None = None,
    limit: int = 50,
    after: str | None = None,
    schema: str = "queuert",
) -> ChainPage:
    """Async :func:`queuert.client.list_chains`."""
    return await run_async(
        conn,
        ops.list_chains(schema, type_name=type_name, status=status, limit=limit, after=after),
    )


async def wait_for_chain(
    conn: AsyncConnectionLike,
    chain_id: UUID | str,
    timeout: float,
    *,
    poll_interval: float = 1.0,
    raise_on_failure: bool = True,
    schema: str = "queuert",
) -> Chain:
    """Async :func:`queuert.client.wait_for_chain` (same connection rules)."""
    return await run_async(
        conn,
        _waiting.wait_for_chain(
            schema,
            chain_id,
            timeout,
            poll_interval=poll_interval,
            raise_on_failure=raise_on_failure,
        ),
    )


# ------------------------------------------ job types, schedules, retention


async def set_job_type(
    conn: AsyncConnectionLike,
    type_name: str,
    *,
    max_attempts: int | None = None,
    backoff_initial: timedelta = timedelta(seconds=10),
    backoff_multiplier: float = 2.0,
    backoff_max: timedelta = timedelta(minutes=5),
    lease: timedelta = timedelta(seconds=60),
    max_running: int | None = None,
    rate_limit: int | None = None,
    rate_interval: timedelta | None = None,
    schema: str = "queuert",
) -> JobTypePolicy:
    """Set a type's whole policy (omitted arguments take these defaults):
    retries, lease, and the limits ``claim`` enforces across every worker:
    at most ``max_running`` running at once (0 pauses the type), at most
    ``rate_limit`` starts per ``rate_interval`` (docs/limits.md)."""
    return await run_async(conn, admin.set_job_type(
        schema, type_name, max_attempts=max_attempts, backoff_initial=backoff_initial,
        backoff_multiplier=backoff_multiplier, backoff_max=backoff_max, lease=lease,
        max_running=max_running, rate_limit=rate_limit, rate_interval=rate_interval,
    ))


async def set_schedule(
    conn: AsyncConnectionLike,
    name: str,
    cron: str,
    job_type: JobType[Any, Any] | str,
    input: Any = None,
    *,
    timezone: str = "UTC",
    priority: int = 0,
    schema: str = "queuert",
) -> Schedule:
    """Create or replace the schedule ``name``: workers that handle the type
    start one chain with ``input`` at each tick of ``cron`` (five fields or
    an @macro) in ``timezone`` (docs/recurring.md)."""
    return await run_async(conn, admin.set_schedule(
        schema, name, cron, job_type, input, timezone=timezone, priority=priority
    ))


async def delete_schedule(conn: AsyncConnectionLike, name: str, *, schema: str = "queuert") -> bool:
    """Delete a schedule; False if there was none. Chains it started stay."""
    return await run_async(conn, admin.delete_schedule(schema, name))


async def list_schedules(conn: AsyncConnectionLike, *, schema: str = "queuert") -> list[Schedule]:
    """Every schedule, by name."""
    return await run_async(conn, admin.list_schedules(schema))


async def prune(
    conn: AsyncConnectionLike,
    older_than: timedelta,
    *,
    batch_size: int = 1000,
    failed_older_than: timedelta | None = None,
    schema: str = "queuert",
) -> PruneResult:
    """Delete one batch of up to ``batch_size`` completed and cancelled
    chains older than ``older_than`` (failed ones too past
    ``failed_older_than``) that no other chain waits on. Commit and call
    again while ``result.chains == batch_size`` (docs/engine.md, "Running at
    scale")."""
    return await run_async(conn, admin.prune(
        schema, older_than, batch_size=batch_size, failed_older_than=failed_older_than
    ))
