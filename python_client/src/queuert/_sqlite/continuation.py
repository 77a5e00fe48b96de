"""continue_with (sqlite/sql/055_continue_with.sql)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from ..errors import QueuertError
from . import _checks as check
from ._actions import job_for_action
from ._connection import one, run, writing
from ._errors import engine_error
from ._notices import announce
from ._rows import Row
from ._statements import statements
from ._values import from_us, new_job_id, now_us, to_json
from .start import blocker_count

__all__ = ["continue_jobs", "continue_with"]

_OUTSIDE = ("blocked", "pending", "running")


def _next_job(values: Any, deduplicated: bool) -> Row:
    job_id, chain_id, chain_index, type_name, status, scheduled_at = values
    return {
        "id": UUID(job_id),
        "chain_id": UUID(chain_id),
        "chain_index": chain_index,
        "type_name": type_name,
        "status": status,
        "scheduled_at": from_us(scheduled_at),
        "deduplicated": deduplicated,
    }


def continue_with(
    conn: sqlite3.Connection,
    job_id: UUID | str,
    worker_id: str | None,
    type_name: str,
    input: Any = None,
    id: UUID | str | None = None,
    schedule_at: datetime | None = None,
    schedule_after: timedelta | None = None,
    blockers: Sequence[UUID | str] | None = None,
    priority: int | None = None,
    trace_context: str | None = None,
    attempt: int | None = None,
    *,
    schema: str = "queuert",
) -> Row:
    """Complete the job as handed off and create the chain's next job, in one
    step (DESIGN.md ``continue_with``). Returns the new job: ``id, chain_id,
    chain_index, type_name, status, scheduled_at, deduplicated``; a repeat
    by whoever made the first call returns the existing next job."""
    check.check_type_name(type_name)
    at, after = check.check_schedule(schedule_at, schedule_after)
    wanted = check.distinct_blockers(blockers)
    jid = check.job_id_text(job_id)
    params: dict[str, Any] = {
        "job_id": jid,
        "id": new_job_id() if id is None else check.job_id_text(id, "id"),
        "type_name": type_name,
        "input": to_json(input),
        "schedule_at": at,
        "schedule_after": after,
        "priority": check.optional_int(priority, "priority"),
        "trace_context": check.check_text(trace_context, "trace_context"),
    }
    q = statements(schema)
    with writing(conn, schema, "continue a job"):
        job = job_for_action(conn, q, jid, worker_id, attempt, "continue", _OUTSIDE)
        if job.code == "repeat":
            existing = one(conn, q["next_job"], {"id": job.continued_to})
            return _next_job(existing, True)
        if job.chain_id in wanted:
            raise engine_error(
                "QU006",
                f"a continuation of chain {job.chain_id} cannot be blocked on its own chain",
                f"chain_id={job.chain_id}",
            )
        params["open_blockers"] = blocker_count(conn, q, wanted)
        params["blocker_count"] = len(wanted)
        params["now"] = now_us()
        created = one(conn, q["continue_insert"], params)
        if created is None:
            raise engine_error("QU006", f"a job with id {params['id']} already exists", f"job_id={params['id']}")
        if wanted:
            run(
                conn,
                q["insert_blockers"],
                {"job_id": params["id"], "blockers": json.dumps(wanted), "trace_context": params["trace_context"]},
            )
        run(
            conn,
            q["continue_hand_off"],
            {"job_id": jid, "next_id": params["id"], "worker_id": worker_id, "now": params["now"]},
        )
    result = _next_job(created, False)
    announce(
        ready_types=(type_name,) if result["status"] == "pending" else (),
        lost_jobs=(jid,) if worker_id is None and job.status == "running" else (),
    )
    return result


#: A refusal that says the job is no longer the worker's: its outcome.
_LOST_OUTCOMES = {"QU001": "not_found", "QU003": "finished", "QU004": "taken"}


def continue_jobs(
    conn: sqlite3.Connection,
    worker_id: str,
    job_ids: Sequence[UUID | str],
    continuations: Sequence[Mapping[str, Any]],
    attempts: Sequence[int | None] | None = None,
    *,
    schema: str = "queuert",
) -> list[Row]:
    """The worker's batched continuation: ``continue_with`` for each job, in
    one transaction, each in a savepoint of its own, so that one refusal
    undoes only its own job. ``continuations`` holds, per job, the keyword
    arguments of :func:`continue_with` (``type_name``, ``input``, ``id``,
    ``schedule_at``, ``schedule_after``, ``blockers``, ``priority``,
    ``trace_context``).

    One row per input element: ``job_id, outcome, next`` (the new job, as
    continue_with returns it), ``error``. Outcome ``continued``; or
    ``not_found``, ``finished``, ``taken`` (the job is no longer the
    worker's: QU001, QU003, QU004, the error attached); or ``refused``
    (another refusal, e.g. a blocker that does not exist: ``error`` says
    why; the caller fails the attempt with it).
    """
    ids = check.check_batch_worker("continue_jobs", worker_id, job_ids)
    if isinstance(continuations, (str, bytes)) or len(continuations) != len(ids):
        check.invalid("continuations must have one element per job id")
    if attempts is not None and (isinstance(attempts, (str, bytes)) or len(attempts) != len(ids)):
        check.invalid("attempts must have one element per job id")
    tries = list(attempts) if attempts is not None else [None] * len(ids)
    result: list[Row] = []
    with writing(conn, schema, "continue jobs"):
        for jid, cont, tried in zip(ids, continuations, tries):
            try:
                created = continue_with(conn, jid, worker_id, attempt=tried, schema=schema, **cont)
            except QueuertError as e:
                lost = _LOST_OUTCOMES.get(e.sqlstate or "")
                result.append({"job_id": UUID(jid), "outcome": lost or "refused", "next": None, "error": e})
                continue
            result.append({"job_id": UUID(jid), "outcome": "continued", "next": created, "error": None})
    return result
