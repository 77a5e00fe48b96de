"""complete and complete_jobs (sqlite/sql/050_complete.sql)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from . import _checks as check
from ._actions import batch_outcomes, finish_chains, job_for_action
from ._connection import rows, writing
from ._notices import announce
from ._rows import Row
from ._statements import statements
from ._values import now_us, to_json

__all__ = ["complete", "complete_jobs", "complete_one", "complete_picked"]

_OUTSIDE = ("blocked", "pending", "running")


def complete(
    conn: sqlite3.Connection,
    job_id: UUID | str,
    worker_id: str | None,
    output: Any = None,
    attempt: int | None = None,
    *,
    trace_context: str | None = None,
    schema: str = "queuert",
) -> Row:
    """Complete a job (DESIGN.md ``complete``): by the worker it is running
    under (at ``attempt``, when given), or from outside with ``worker_id``
    None (a blocked, pending or running job). Returns ``id, chain_id,
    status, chain_completed``, and ``dependents`` when a ``trace_context``
    is given (written on the blocker edges the completion resolves, as in
    PostgreSQL); dependents the chain unblocks become pending in the same
    transaction."""
    jid = check.job_id_text(job_id)
    q = statements(schema)
    with writing(conn, schema, "complete a job"):
        job = job_for_action(conn, q, jid, worker_id, attempt, "complete", _OUTSIDE)
        now = now_us()
        completed = rows(
            conn,
            q["complete_job"],
            {"id": jid, "output": to_json(output), "attempt": attempt, "worker_id": worker_id, "now": now},
        )
        check.check_text(trace_context, "trace_context")
        traces = {job.chain_id: trace_context} if trace_context else None
        dependents: dict[str, list[dict[str, Any]]] = {}
        unblocked = finish_chains(conn, q, completed, now, traces, dependents)
    announce(
        ready_types=[t for types in unblocked.values() for t in types],
        completed_chains=(job.chain_id,),
        lost_jobs=(jid,) if worker_id is None and job.status == "running" else (),
    )
    row: Row = {
        "id": UUID(jid),
        "chain_id": UUID(job.chain_id),
        "status": "completed",
        "chain_completed": True,
        "unblocked_types": sorted(t for types in unblocked.values() for t in types),
    }
    if trace_context is not None:
        row["dependents"] = dependents.get(job.chain_id)
    return row


def _per_job(what: str, values: Sequence[Any] | None, size: int) -> list[Any]:
    if values is None:
        return [None] * size
    if isinstance(values, (str, bytes)) or len(values) != size:
        check.invalid("outputs, attempts and trace_contexts must have one element per job id")
    return list(values)


def complete_jobs(
    conn: sqlite3.Connection,
    worker_id: str,
    job_ids: Sequence[UUID | str],
    outputs: Sequence[Any] | None = None,
    attempts: Sequence[int | None] | None = None,
    *,
    trace_contexts: Sequence[str | None] | None = None,
    schema: str = "queuert",
) -> list[Row]:
    """The worker's batched acknowledgement (DESIGN.md Additions).

    One row per input element: ``job_id, outcome, unblocked_types``, outcome
    ``completed``, ``taken``, ``finished`` or ``not_found``. Never raises for
    a single lost job. With ``trace_contexts`` (one per job id) each row
    also has ``dependents``, as PostgreSQL's complete_jobs (migration 0004).
    """
    ids = check.check_batch_worker("complete_jobs", worker_id, job_ids)
    outs = _per_job("outputs", outputs, len(ids))
    tries = [None if a is None else check.int32(a, "attempts") for a in _per_job("attempts", attempts, len(ids))]
    traced = None if trace_contexts is None else _per_job("trace_contexts", trace_contexts, len(ids))
    by_job = {} if traced is None else {jid: tc for jid, tc in zip(ids, traced) if tc}
    requests: dict[str, list[Any]] = {}
    for jid, out, tried in zip(ids, outs, tries):
        if jid not in requests:  # a repeated id: its first element
            requests[jid] = [jid, to_json(out), tried]
    q = statements(schema)
    with writing(conn, schema, "complete jobs", single_write=True):
        now = now_us()
        if len(requests) == 1:
            ((jid, output, tried),) = requests.values()
            completed = rows(
                conn,
                q["complete_job"],
                {"id": jid, "output": output, "attempt": tried, "worker_id": worker_id, "now": now},
            )
        else:
            completed = rows(
                conn,
                q["complete_jobs"],
                {"requests": json.dumps(list(requests.values())), "worker_id": worker_id, "now": now},
            )
        done = {row[0]: row[1] for row in completed}
        traces = {done[jid]: tc for jid, tc in by_job.items() if jid in done} if by_job else None
        dependents: dict[str, list[dict[str, Any]]] = {}
        unblocked = finish_chains(conn, q, completed, now, traces, dependents)
        outcomes = batch_outcomes(conn, q, ids, done, "completed")
    announce(
        ready_types=[t for types in unblocked.values() for t in types],
        completed_chains=dict.fromkeys(done.values()),
    )
    given = job_ids if isinstance(job_ids, (list, tuple)) else ids
    result: list[Row] = [
        {
            "job_id": job_id if isinstance(job_id, UUID) else UUID(jid),
            "outcome": outcome,
            "unblocked_types": unblocked.get(done[jid], []) if outcome == "completed" else [],
        }
        for job_id, jid, outcome in zip(given, ids, outcomes)
    ]
    if traced is not None:
        for row, jid in zip(result, ids):
            row["dependents"] = dependents.get(done[jid]) if row["outcome"] == "completed" and jid in by_job else None
    return result


def complete_one(
    conn: sqlite3.Connection,
    worker_id: str,
    job_id: UUID | str,
    output_json: str | None,
    attempt: int,
    *,
    trace_context: str | None = None,
    dependents: dict[str, list[dict[str, Any]]] | None = None,
    schema: str = "queuert",
) -> tuple[str, list[str]]:
    """complete_jobs for the one job a worker acknowledges (atomic mode's
    every completion), from the worker's own values: a UUID (or the id as
    the claim returned it, canonical text), the output as JSON text the
    worker wrote, its attempt. Returns ``(outcome, unblocked_types)`` as
    complete_jobs' row has them. The same statements without the batch's
    argument checks and result rows: at one job per transaction they were
    a fifth of the worker's time. ``trace_context``: the completing span's
    traceparent (written on the blocker edges this completion resolves);
    ``dependents`` then gets the jobs that waited on the chain, by chain id
    (complete_jobs' ``dependents``)."""
    jid = job_id if type(job_id) is str else str(job_id)
    q = statements(schema)
    with writing(conn, schema, "complete a job", single_write=True):
        now = now_us()
        completed = rows(
            conn,
            q["complete_job"],
            {"id": jid, "output": output_json, "attempt": attempt, "worker_id": worker_id, "now": now},
        )
        if not completed:
            return batch_outcomes(conn, q, [jid], {}, "completed")[0], []
        traces = {completed[0][1]: trace_context} if trace_context else None
        unblocked = finish_chains(conn, q, completed, now, traces, dependents)
    announce(
        ready_types=[t for types in unblocked.values() for t in types],
        completed_chains=(completed[0][1],),
    )
    return "completed", unblocked.get(completed[0][1], [])


def complete_picked(
    conn: sqlite3.Connection,
    worker_id: str,
    seq: int,
    attempt: int,
    output_json: str | None,
    *,
    known: tuple[str, str, int, int] | None = None,
    trace_context: str | None = None,
    dependents: dict[str, list[dict[str, Any]]] | None = None,
    schema: str = "queuert",
) -> tuple[str, list[str]]:
    """complete_one for a job an atomic slot picked and never claimed
    (``WorkerClaim.pick``: its seq and the attempt the claim would have
    counted), in the pick's open transaction: pending to completed in one
    statement (complete_picked), then the chain's fan-in as complete_one.
    ``known``: the job's id, chain id, chain index and has_dependents as
    picked, when nothing has been written on ``conn`` since the pick (so
    they still hold: the transaction holds the write lock); else they are
    read again. Returns ``(outcome, unblocked_types)`` as complete_one:
    outcome ``completed``, else (the job was no longer pending at the
    attempt before: nothing written) ``taken``, ``finished`` or
    ``not_found``."""
    q = statements(schema)
    now = now_us()
    done = conn.execute(
        q["complete_picked"],
        {"seq": seq, "output": output_json, "attempt": attempt, "worker_id": worker_id, "now": now},
    ).rowcount
    if done != 1 or known is None:
        found = conn.execute(q["picked_job"], {"seq": seq}).fetchone()
        if found is None:
            return "not_found", []
        if done != 1:
            return batch_outcomes(conn, q, [found[0]], {}, "completed")[0], []
        known = found
    chain = known[1]
    if known[2] == 0 and not known[3]:  # a root nothing waits on: the chain is done
        unblocked: dict[str, list[str]] = {}
    else:
        traces = {chain: trace_context} if trace_context else None
        unblocked = finish_chains(conn, q, [known], now, traces, dependents)
    if unblocked:
        announce(ready_types=dict.fromkeys(t for types in unblocked.values() for t in types), completed_chains=(chain,))
    else:
        announce(completed_chains=(chain,))
    return "completed", unblocked.get(chain, [])
