"""The synchronous client: thin functions over the SQL API on *your* connection.

Every function takes your connection first: a psycopg 3 ``Connection``, or a
SQLAlchemy ``Session`` / ``Connection`` on a psycopg 3 engine, or Django's
``connection`` (:mod:`queuert._connections`), and runs its statements in
whatever transaction that connection is in. None of them begins, commits or
rolls back a transaction: a job started inside your transaction commits or
rolls back with your own writes. On an autocommit connection outside a
transaction block each call is its own transaction; there (and only there)
the client re-runs a call that hit a serialization failure (40001) or a
deadlock (40P01), because nothing else was in that transaction. Inside your
transaction, wrap the whole transaction with :func:`queuert.retry_on_conflict`.

The async twins live in :mod:`queuert.aio`. Both are only these signatures:
the calls are written once (:mod:`queuert._operations`,
:mod:`queuert._waiting`) and run by :mod:`queuert._execution`;
``tests_py/test_client_surface.py`` fails when the two surfaces drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload
from uuid import UUID

from . import _admin_operations as admin
from . import _operations as ops
from . import _waiting
from ._connections import ConnectionLike
from ._execution import run
from ._plain_start import start_plain
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
def start_chain(
    conn: ConnectionLike,
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
def start_chain(
    conn: ConnectionLike,
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
def start_chain(
    conn: ConnectionLike,
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


def start_chain(
    conn: ConnectionLike,
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
    """Start a chain (create its root job) in the connection's transaction.

    With a :class:`~queuert.JobType`, ``input`` is validated and serialised
    before anything is sent (:class:`~queuert.PayloadValidationError`); with a
    type *name*, it is stored as JSON as given. ``blockers`` are chain ids this
    chain waits for (fan-in); ``dedup_key`` returns an existing matching chain
    instead of creating one (``deduplicated=True``).
    """
    if ops.at_defaults(  # the common start: straight to the connection (_plain_start)
        id, schedule_at, schedule_after, blockers, dedup_key, dedup_scope, dedup_window, priority, trace_context
    ):
        started = start_plain(conn, schema, job_type, input)
        if started is not None:
            return started
    return run(
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


def start_chains(
    conn: ConnectionLike,
    items: Sequence[BaseChainSpec],
    *,
    schema: str = "queuert",
) -> list[StartedChain]:
    """Start many chains with one ``start_chains(items jsonb)`` call; results
    in input order. A blocker may name the ``id`` of an earlier item."""
    return run(conn, ops.start_chains(schema, items))


@overload
def complete_chain(
    conn: ConnectionLike,
    chain_id: UUID | str,
    output: O,
    *,
    job_type: JobType[Any, O],
    job_id: UUID | str | None = None,
    schema: str = "queuert",
) -> CompletedJob: ...


@overload
def complete_chain(
    conn: ConnectionLike,
    chain_id: UUID | str,
    output: Any = None,
    *,
    job_type: str | None = None,
    job_id: UUID | str | None = None,
    schema: str = "queuert",
) -> CompletedJob: ...


@overload
def complete_chain(
    conn: ConnectionLike,
    chain_id: UUID | str,
    output: None = None,
    *,
    continue_with: Continuation,
    job_type: JobType[Any, Any] | str | None = None,
    job_id: UUID | str | None = None,
    schema: str = "queuert",
) -> CompletedJob: ...


def complete_chain(
    conn: ConnectionLike,
    chain_id: UUID | str,
    output: Any = None,
    *,
    continue_with: Continuation | None = None,
    job_type: JobType[Any, Any] | str | None = None,
    job_id: UUID | str | None = None,
    schema: str = "queuert",
) -> CompletedJob:
    """Complete, or continue, a chain's current job from outside a worker.

    Finds the chain's current (last) job and calls the SQL ``complete`` with
    ``output`` (or ``continue_with`` with the :class:`~queuert.Continuation`)
    and ``worker_id`` NULL, in one statement. ``job_type`` asserts the current
    job's type (mismatch: :class:`~queuert.InvalidArgumentError`) and, given as
    a JobType, validates ``output`` against its output type and the
    continuation against its ``continues_with``. ``job_id`` targets that job of
    the chain instead of the current one (so a repeated continuation is
    idempotent). A job that is already completed: :class:`~queuert.InvalidJobStatusError`.
    """
    return run(
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


def cancel_chains(
    conn: ConnectionLike,
    chain_ids: Iterable[UUID | str],
    *,
    cascade: bool = False,
    schema: str = "queuert",
) -> list[UUID]:
    """Cancel chains; returns the ids of chains that had a job cancelled.
    Refused with :class:`~queuert.ChainHasDependentsError` when a chain outside
    the set waits on one of them, unless ``cascade`` adds those blockers."""
    return run(conn, ops.chain_op(schema, "cancel_chains", chain_ids, cascade))


def delete_chains(
    conn: ConnectionLike,
    chain_ids: Iterable[UUID | str],
    *,
    cascade: bool = False,
    schema: str = "queuert",
) -> list[UUID]:
    """Delete chains (jobs and blocker rows); same refusal rule as cancel."""
    return run(conn, ops.chain_op(schema, "delete_chains", chain_ids, cascade))


def trigger_jobs(
    conn: ConnectionLike,
    job_ids: Iterable[UUID | str],
    *,
    schema: str = "queuert",
) -> list[UUID]:
    """Make pending jobs due now (all or nothing)."""
    return run(conn, ops.job_op(schema, "trigger_jobs", job_ids))


def retry_jobs(
    conn: ConnectionLike,
    job_ids: Iterable[UUID | str],
    *,
    schema: str = "queuert",
) -> list[UUID]:
    """Make failed or cancelled jobs pending again, attempts reset (all or nothing)."""
    return run(conn, ops.job_op(schema, "retry_jobs", job_ids))


def get_chain(
    conn: ConnectionLike, chain_id: UUID | str, *, schema: str = "queuert"
) -> Chain:
    """The chain (view ``chain``) with its jobs in order; :class:`~queuert.ChainNotFoundError`."""
    return run(conn, ops.get_chain(schema, chain_id))


def list_chains(
    conn: ConnectionLike,
    *,
    type_name: str | JobType[Any, Any] | None = None,
    status: str | Sequence[str] | None = None,
    limit: int = 50,
    after: str | None = None,
    schema: str = "queuert",
) -> ChainPage:
    """Chains newest first, filtered by the chain's type and/or status, keyset
    paginated on (created_at, chain_id): pass ``page.next_cursor`` as ``after``."""
    return run(
        conn,
        ops.list_chains(schema, type_name=type_name, status=status, limit=limit, after=after),
    )


def wait_for_chain(
    conn: ConnectionLike,
    chain_id: UUID | str,
    timeout: float,
    *,
    poll_interval: float = 1.0,
    raise_on_failure: bool = True,
    schema: str = "queuert",
) -> Chain:
    """Block until the chain completes and return it (view row, with output).

    On an autocommit connection outside a transaction block it LISTENs on
    ``<schema>_chain_completed`` and re-checks on a matching notification or
    every ``poll_interval`` seconds (notifications are hints), and UNLISTENs
    afterwards unless the connection was already listening. Any other
    connection (in a transaction, or not autocommit) is polled every
    ``poll_interval`` seconds inside its transaction, which must be READ
    COMMITTED (each poll then sees newly committed work; in REPEATABLE READ or
    SERIALIZABLE it never would, so that is :class:`~queuert.InvalidArgumentError`).
    LISTEN would not take effect before that transaction commits, and the
    client never commits for you.

    Raises :class:`~queuert.ChainWaitTimeout` after ``timeout`` seconds,
    :class:`~queuert.ChainCancelledError` if the chain is cancelled,
    :class:`~queuert.ChainFailedError` if its current job is ``failed``
    (unless ``raise_on_failure=False``: then it waits for a retry), and
    :class:`~queuert.ChainNotFoundError`.
    """
    return run(
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


def set_job_type(
    conn: ConnectionLike,
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
    return run(conn, admin.set_job_type(
        schema, type_name, max_attempts=max_attempts, backoff_initial=backoff_initial,
        backoff_multiplier=backoff_multiplier, backoff_max=backoff_max, lease=lease,
        max_running=max_running, rate_limit=rate_limit, rate_interval=rate_interval,
    ))


def set_schedule(
    conn: ConnectionLike,
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
    return run(conn, admin.set_schedule(
        schema, name, cron, job_type, input, timezone=timezone, priority=priority
    ))


def delete_schedule(conn: ConnectionLike, name: str, *, schema: str = "queuert") -> bool:
    """Delete a schedule; False if there was none. Chains it started stay."""
    return run(conn, admin.delete_schedule(schema, name))


def list_schedules(conn: ConnectionLike, *, schema: str = "queuert") -> list[Schedule]:
    """Every schedule, by name."""
    return run(conn, admin.list_schedules(schema))


def prune(
    conn: ConnectionLike,
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
    return run(conn, admin.prune(
        schema, older_than, batch_size=batch_size, failed_older_than=failed_older_than
    ))
