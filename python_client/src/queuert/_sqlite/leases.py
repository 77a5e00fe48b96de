"""renew_leases, release_jobs and reap (sqlite/sql/070_leases.sql)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

from . import _checks as check
from ._actions import batch_outcomes
from ._connection import reading, rows, writing
from ._notices import announce
from ._rows import Row
from ._statements import statements
from ._values import ids_json, now_us

__all__ = ["reap", "release_jobs", "renew_leases", "running_jobs"]


def renew_leases(
    conn: sqlite3.Connection,
    worker_id: str,
    job_ids: Sequence[UUID | str],
    lease: timedelta | None = None,
    *,
    schema: str = "queuert",
) -> list[Row]:
    """Heartbeat for many jobs (DESIGN.md ``renew_leases``): one row per
    distinct job, in input order, ``job_id, outcome`` with outcome
    ``renewed``, ``taken``, ``finished`` or ``not_found``."""
    lease_us = check.check_lease(lease)
    ids = list(dict.fromkeys(check.check_batch_worker("renew_leases", worker_id, job_ids)))
    if not ids:
        return []
    q = statements(schema)
    with writing(conn, schema, "renew leases", single_write=True):
        renewed = {
            r[0]
            for r in rows(
                conn,
                q["renew_leases"],
                {"job_ids": ids_json(ids), "worker_id": worker_id, "lease": lease_us, "now": now_us()},
            )
        }
        outcomes = batch_outcomes(conn, q, ids, renewed, "renewed")
    return [{"job_id": UUID(jid), "outcome": outcome} for jid, outcome in zip(ids, outcomes)]


def release_jobs(
    conn: sqlite3.Connection,
    worker_id: str,
    job_ids: Sequence[UUID | str],
    attempts: Sequence[int | None] | None = None,
    *,
    schema: str = "queuert",
) -> list[Row]:
    """Give back running jobs whose handler never started (DESIGN.md
    Additions): pending again at their old place, the claim's attempt taken
    back. One row per input element, ``job_id, outcome`` with ``released``,
    ``taken``, ``finished`` or ``not_found``."""
    if attempts is not None and job_ids is not None and not isinstance(job_ids, (str, bytes)):
        if isinstance(attempts, (str, bytes)) or len(attempts) != len(list(job_ids)):
            check.invalid("attempts must have one element per job id")
    ids = check.check_batch_worker("release_jobs", worker_id, job_ids)
    tries = [check.optional_int(a, "attempts") for a in (attempts or [None] * len(ids))]
    requests: dict[str, list[Any]] = {}
    for jid, tried in zip(ids, tries):
        requests.setdefault(jid, [jid, tried])
    if not ids:
        return []
    q = statements(schema)
    with writing(conn, schema, "release jobs", single_write=True):
        released = dict(
            rows(conn, q["release_jobs"], {"requests": json.dumps(list(requests.values())), "worker_id": worker_id})
        )
        outcomes = batch_outcomes(conn, q, ids, released, "released")
    announce(ready_types=dict.fromkeys(released.values()))
    return [{"job_id": UUID(jid), "outcome": outcome} for jid, outcome in zip(ids, outcomes)]


def reap(conn: sqlite3.Connection, max_jobs: int | None = 100, *, schema: str = "queuert") -> list[Row]:
    """Running jobs whose lease expired go back to pending (keeping their
    place) or to failed when attempts are exhausted (DESIGN.md ``reap``).
    Rows ``job_id, previous_worker, status, type_name`` (PostgreSQL's
    ``reap_jobs``), oldest lease first."""
    limit = 100 if max_jobs is None else check.int32(max_jobs, "max_jobs")
    if limit < 1:
        check.invalid(f"max_jobs must be at least 1, got {max_jobs}")
    q = statements(schema)
    with writing(conn, schema, "reap expired leases"):
        now = now_us()
        expired = rows(conn, q["reap_expired"], {"max_jobs": limit, "now": now})
        if not expired:
            return []
        reaped = {
            r[0]: r
            for r in rows(conn, q["reap"], {"seqs": json.dumps([e[0] for e in expired]), "now": now})
        }
    result = [
        {
            "job_id": UUID(job_id),
            "previous_worker": worker,
            "status": reaped[job_id][1],
            "type_name": reaped[job_id][2],
        }
        for _seq, job_id, worker in expired
        if job_id in reaped
    ]
    announce(
        ready_types=dict.fromkeys(r[2] for r in reaped.values() if r[1] == "pending"),
        lost_jobs=list(reaped),
    )
    return result


def running_jobs(conn: sqlite3.Connection, worker_id: str, *, schema: str = "queuert") -> list[Row]:
    """The jobs running under ``worker_id``: rows ``id, attempt, type_name``
    (a worker releases the ones it does not know of)."""
    check.check_text(worker_id, "worker_id")
    with reading(conn, "read running jobs"):
        found = rows(conn, statements(schema)["running_jobs"], {"worker_id": worker_id})
    return [{"id": UUID(job_id), "attempt": attempt, "type_name": type_name} for job_id, attempt, type_name in found]
