"""fail and fail_jobs (sqlite/sql/060_fail.sql)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from . import _checks as check
from ._actions import batch_outcomes, job_for_action
from ._connection import rows, writing
from ._notices import announce
from ._rows import Row
from ._statements import statements
from ._values import from_us, now_us

__all__ = ["fail", "fail_jobs"]

_OUTSIDE = ("pending", "running")


def _ensure_math(conn: sqlite3.Connection, exc: sqlite3.OperationalError) -> None:
    """SQLite builds without SQLITE_ENABLE_MATH_FUNCTIONS lack ln() and
    power(), which the backoff uses: give this connection Python's."""
    import math

    if "no such function" not in str(exc):
        raise exc
    conn.create_function("ln", 1, math.log, deterministic=True)
    conn.create_function("power", 2, math.pow, deterministic=True)


def _run_fail(conn: sqlite3.Connection, q: dict[str, str], params: dict[str, Any]) -> list[tuple[Any, ...]]:
    try:
        return rows(conn, q["fail_jobs"], params)
    except sqlite3.OperationalError as e:
        _ensure_math(conn, e)
        return rows(conn, q["fail_jobs"], params)


def fail(
    conn: sqlite3.Connection,
    job_id: UUID | str,
    worker_id: str | None,
    error: str | None,
    retry_at: datetime | None = None,
    attempt: int | None = None,
    *,
    schema: str = "queuert",
) -> Row:
    """Record a failed attempt (DESIGN.md ``fail``): pending again at
    ``retry_at`` (clamped to now) or after the type's backoff, or failed
    once ``max_attempts`` is reached. Returns ``id, status, scheduled_at,
    attempt``."""
    jid = check.job_id_text(job_id)
    retry_us = check.timestamp_us(retry_at, "retry_at")
    check.check_text(error, "error")
    q = statements(schema)
    with writing(conn, schema, "fail a job"):
        job = job_for_action(conn, q, jid, worker_id, attempt, "fail", _OUTSIDE)
        _id, status, scheduled_at, tried, type_name = _run_fail(
            conn,
            q,
            {
                "requests": json.dumps([[jid, error, retry_us, attempt]]),
                "worker_id": worker_id,
                "now": now_us(),
            },
        )[0]
    announce(
        ready_types=(type_name,) if status == "pending" else (),
        lost_jobs=(jid,) if worker_id is None and job.status == "running" else (),
    )
    return {"id": UUID(jid), "status": status, "scheduled_at": from_us(scheduled_at), "attempt": tried}


def fail_jobs(
    conn: sqlite3.Connection,
    worker_id: str,
    job_ids: Sequence[UUID | str],
    errors: Sequence[str | None] | None,
    retry_ats: Sequence[datetime | None] | None = None,
    attempts: Sequence[int | None] | None = None,
    *,
    schema: str = "queuert",
) -> list[Row]:
    """The worker's batched failure (DESIGN.md Additions): one row per input
    element, ``job_id, outcome, status, scheduled_at``; outcome ``failed``
    (status says whether it will retry) or taken / finished / not_found."""
    size = None if job_ids is None or isinstance(job_ids, (str, bytes)) else len(list(job_ids))
    for values in (errors, retry_ats, attempts):
        bad_length = values is not None and (isinstance(values, (str, bytes)) or len(values) != size)
        if bad_length or (values is errors and errors is None):
            check.invalid("errors, retry_ats and attempts must have one element per job id")
    ids = check.check_batch_worker("fail_jobs", worker_id, job_ids)
    assert errors is not None
    retries = [check.timestamp_us(r, "retry_ats") for r in (retry_ats or [None] * len(ids))]
    tries = [check.optional_int(a, "attempts") for a in (attempts or [None] * len(ids))]
    requests: dict[str, list[Any]] = {}
    for jid, err, retry_us, tried in zip(ids, errors, retries, tries):
        requests.setdefault(jid, [jid, check.check_text(err, "errors"), retry_us, tried])
    q = statements(schema)
    with writing(conn, schema, "fail jobs", single_write=True):
        done = {
            r[0]: r
            for r in _run_fail(
                conn, q, {"requests": json.dumps(list(requests.values())), "worker_id": worker_id, "now": now_us()}
            )
        }
        outcomes = batch_outcomes(conn, q, ids, done, "failed")
    announce(ready_types=dict.fromkeys(r[4] for r in done.values() if r[1] == "pending"))
    return [
        {
            "job_id": UUID(jid),
            "outcome": outcome,
            "status": done[jid][1] if outcome == "failed" else None,
            "scheduled_at": from_us(done[jid][2]) if outcome == "failed" else None,
        }
        for jid, outcome in zip(ids, outcomes)
    ]
