"""The client functions on a ``sqlite3.Connection``.

:mod:`queuert._operations` checks and converts a client call's arguments
once, then hands each backend what it runs: PostgreSQL a statement, SQLite
one of these functions (the connection last, so that the operation can bind
the rest in advance). Each runs the SQLite engine's operations in the
caller's transaction (:mod:`queuert._sqlite._connection`) and returns the
client's result objects, the same as the PostgreSQL path returns. The
engine's operations report to the transaction hooks themselves (SQLite has
no NOTIFY), so nothing here does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from .._records import Chain, CompletedJob, ContinuedJob, Job, StartedChain, started_chain
from .._traced_calls import begin_settlement
from ..errors import ChainNotFoundError, InvalidArgumentError
from ._connection import one, reading, writing
from ._rows import chain_row
from ._statements import statements
from ._values import Json
from .admin import cancel_chains, delete_chains, retry_jobs, trigger_jobs
from .complete import complete
from .continuation import continue_with
from .inspection import chain, chain_jobs, list_chains
from .start import start_chain, start_plain
from .start_batch import start_chains, start_usual_items

__all__ = [
    "chain_op",
    "complete_chain",
    "continue_chain",
    "get_chain",
    "job_op",
    "list_chain_rows",
    "start_chain_call",
    "start_chain_traced_call",
    "start_chains_call",
    "start_chains_traced_call",
    "wait_probe",
]


def _json(text: str | None) -> Json | None:
    return None if text is None else Json(text)


def start_chain_call(
    schema: str, params: Sequence[Any], given: Sequence[str], conn: sqlite3.Connection
) -> StartedChain:
    """``params`` and ``given`` as the PostgreSQL call binds them: the type
    name, the input's JSON text, then one value per optional argument named
    in ``given``."""
    if not given:  # the common start (queuert._operations checked the name)
        chain_id, created = start_plain(conn, params[0], params[1], None, schema)
        return started_chain((chain_id, params[0], "pending", created, created, False))
    options = dict(zip(given, params[2:]))
    row = start_chain(conn, params[0], _json(params[1]), schema=schema, **options)
    return started_chain(
        (row["id"], row["type_name"], row["status"], row["scheduled_at"], row["created_at"], row["deduplicated"])
    )


def start_chains_call(schema: str, items: list[dict[str, Any]], conn: sqlite3.Connection) -> list[StartedChain]:
    """``items`` in the engine's JSON shape (queuert._arguments.chain_items)."""
    usual = start_usual_items(conn, items, schema)
    if usual is not None:  # straight into the results, without the engine's rows
        ids, type_names, created = usual
        return [
            started_chain((job_id, type_name, "pending", created, created, False))
            for job_id, type_name in zip(ids, type_names)
        ]
    return [
        started_chain((r["id"], r["type_name"], r["status"], r["scheduled_at"], r["created_at"], r["deduplicated"]))
        for r in start_chains(conn, items, schema=schema)
    ]


def with_existing_traces(
    schema: str, started: list[StartedChain], conn: sqlite3.Connection
) -> list[tuple[StartedChain, str | None]]:
    """Each started chain with, when its start was deduplicated, the
    traceparent stored on the chain it resolved to (what its creation span
    links to, as PostgreSQL's traced start_chain(s) return it); read in the
    caller's transaction, after the start."""
    if not any(chain.deduplicated for chain in started):
        return [(chain, None) for chain in started]
    q = statements(schema)["root_trace_context"]
    pairs: list[tuple[StartedChain, str | None]] = []
    with reading(conn, "read a chain's trace context"):
        for chain in started:
            found = one(conn, q, {"chain_id": str(chain.id)}) if chain.deduplicated else None
            pairs.append((chain, None if found is None else found[0]))
    return pairs


def start_chain_traced_call(
    schema: str, params: Sequence[Any], given: Sequence[str], conn: sqlite3.Connection
) -> tuple[StartedChain, str | None]:
    """start_chain_call, and the existing chain's traceparent when deduplicated."""
    return with_existing_traces(schema, [start_chain_call(schema, params, given, conn)], conn)[0]


def start_chains_traced_call(
    schema: str, items: list[dict[str, Any]], conn: sqlite3.Connection
) -> list[tuple[StartedChain, str | None]]:
    """start_chains_call, each with the existing chain's traceparent when deduplicated."""
    return with_existing_traces(schema, start_chains_call(schema, items, conn), conn)


def _target_job(
    conn: sqlite3.Connection, q: dict[str, str], chain_id: UUID, job_id: UUID | None, expected: str | None
) -> tuple[str, str, dict[str, Any]]:
    """The (id, status, row) of the job complete_chain acts on, or why there
    is none; the row has what a settle span needs (type_name,
    chain_type_name, trace_context)."""
    if job_id is None:
        found = one(conn, q["current_job"], {"chain_id": str(chain_id)})
        if found is None:
            raise ChainNotFoundError(f"chain {chain_id} not found", chain_id=chain_id)
    else:
        found = one(conn, q["chain_job"], {"chain_id": str(chain_id), "job_id": str(job_id)})
        if found is None:
            raise ChainNotFoundError(
                f"job {job_id} is not a job of chain {chain_id}", chain_id=chain_id, job_id=job_id
            )
    jid, type_name, status, trace_context, chain_type_name = found
    if expected is not None and type_name != expected:
        raise InvalidArgumentError(
            f"the current job of chain {chain_id} is of type {type_name!r}, not {expected!r}",
            chain_id=chain_id,
            job_id=UUID(jid),
        )
    return jid, status, {"type_name": type_name, "chain_type_name": chain_type_name, "trace_context": trace_context}


def complete_chain(
    schema: str,
    chain_id: UUID,
    job_id: UUID | None,
    expected: str | None,
    output: str | None,
    conn: sqlite3.Connection,
    traced: bool = False,
) -> CompletedJob:
    """Complete the chain's current job (or ``job_id``) from outside a
    worker; ``output`` is JSON text. ``traced`` (telemetry active): the
    settle span, as on PostgreSQL (queuert._operations.complete_chain): a
    child of the job's creation span, its traceparent written on the
    blocker edges the completion resolves, ended at commit."""
    q = statements(schema)
    settlement = None
    with writing(conn, schema, "complete a chain"):
        jid, _status, current = _target_job(conn, q, chain_id, job_id, expected)
        if traced:
            settlement, _ = begin_settlement(current, "complete_chain", None, None)
        trace_context = settlement.traceparent() if settlement is not None else None
        done = complete(conn, jid, None, _json(output), schema=schema, trace_context=trace_context)
    completed = CompletedJob(
        job_id=done["id"], chain_id=done["chain_id"], status=done["status"], chain_completed=bool(done["chain_completed"])
    )
    if settlement is not None:
        settlement.settled(
            completed.job_id, completed.chain_id, completed.chain_completed, "completed", done.get("dependents")
        )
    return completed


def continue_chain(
    schema: str,
    chain_id: UUID,
    job_id: UUID | None,
    expected: str | None,
    params: Mapping[str, Any],
    conn: sqlite3.Connection,
    traced: bool = False,
) -> CompletedJob:
    """Continue the chain's current job (or ``job_id``) from outside a
    worker; ``params`` are the continuation's, its input JSON text.
    ``traced`` (telemetry active): the spans PostgreSQL's path has
    (queuert._operations._continue_chain): the job's settle span, a child
    of its creation span, and the next job's creation span under it,
    linked to the job it continues; the next job stores that creation's
    traceparent. Both end at commit."""
    q = statements(schema)
    settlement = creation = None
    with writing(conn, schema, "continue a chain"):
        jid, _status, current = _target_job(conn, q, chain_id, job_id, expected)
        trace_context = params["trace_context"]
        if traced:
            settlement, creation = begin_settlement(
                current, "complete_chain", params["type_name"], params["trace_context"]
            )
            if creation is not None and creation.traceparent is not None:
                trace_context = creation.traceparent
        nxt = continue_with(
            conn,
            jid,
            None,
            params["type_name"],
            _json(params["input"]),
            id=params["id"],
            schedule_at=params["schedule_at"],
            schedule_after=params["schedule_after"],
            blockers=params["blockers"],
            priority=params["priority"],
            trace_context=trace_context,
            schema=schema,
        )
    continued = ContinuedJob.from_row(nxt)
    if settlement is not None:
        if creation is not None:
            creation.created(
                continued.id, continued.chain_id, current["chain_type_name"], continued.status, continued.deduplicated
            )
        settlement.settled(UUID(jid), continued.chain_id, False, "continued")
    return CompletedJob(
        job_id=UUID(jid),
        chain_id=continued.chain_id,
        status="completed",
        chain_completed=False,
        continued_to=continued,
    )


_CHAIN_OPS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "cancel_chains": cancel_chains,
    "delete_chains": delete_chains,
}
_JOB_OPS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "trigger_jobs": trigger_jobs,
    "retry_jobs": retry_jobs,
}


def chain_op(
    schema: str, fn: str, chain_ids: list[UUID] | None, cascade: bool, conn: sqlite3.Connection
) -> list[UUID]:
    """cancel_chains or delete_chains: the ids of the chains acted on."""
    return [r["chain_id"] for r in _CHAIN_OPS[fn](conn, chain_ids, cascade, schema=schema)]


def job_op(schema: str, fn: str, job_ids: list[UUID] | None, conn: sqlite3.Connection) -> list[UUID]:
    """trigger_jobs or retry_jobs: the distinct job ids, in input order."""
    return [r["job_id"] for r in _JOB_OPS[fn](conn, job_ids, schema=schema)]


def get_chain(schema: str, chain_id: UUID, conn: sqlite3.Connection) -> Chain:
    """The chain and its jobs, read in one snapshot."""
    with reading(conn, "read a chain"):
        found = chain(conn, chain_id, schema=schema)
        if found is None:
            raise ChainNotFoundError(f"chain {chain_id} not found", chain_id=chain_id)
        jobs = [Job.from_row(row) for row in chain_jobs(conn, chain_id, schema=schema)]
    return Chain.from_row(found, jobs)


def list_chain_rows(
    schema: str,
    type_name: str | None,
    statuses: list[str] | None,
    limit: int,
    after: tuple[datetime, UUID] | None,
    conn: sqlite3.Connection,
) -> list[dict[str, Any]]:
    """Chain view rows newest first (list_chains' page is made of them)."""
    return list_chains(conn, type_name=type_name, statuses=statuses, after=after, limit=limit, schema=schema)


def wait_probe(schema: str, chain_id: UUID, conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The chain's row as wait_for_chain judges it (with its current job's
    last error), or no row."""
    with reading(conn, "wait for a chain"):
        found = one(conn, statements(schema)["wait_probe"], {"chain_id": str(chain_id)})
    if found is None:
        return []
    row = chain_row(found[:-1])
    row["last_attempt_error"] = found[-1]
    return [row]

