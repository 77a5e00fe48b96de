"""Read-only inspection: a chain, its jobs, chains page by page, stats
(sqlite/sql/100_inspection.sql)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

from . import _checks as check
from ._connection import one, reading, rows
from ._rows import Row, chain_row, job_row
from ._statements import statements
from ._values import now_us, to_us

__all__ = ["chain", "chain_blockers", "chain_jobs", "list_chains", "stats"]


def chain(conn: sqlite3.Connection, chain_id: UUID | str, *, schema: str = "queuert") -> Row | None:
    """The chain's row of the chain view (``chain_id, type_name, status,
    current_job_id, current_type_name, job_count, created_at, completed_at,
    output``), or None when there is no such chain."""
    with reading(conn, "read a chain"):
        found = one(conn, statements(schema)["chain"], {"chain_id": check.job_id_text(chain_id, "chain_id")})
    return None if found is None else chain_row(found)


def chain_jobs(conn: sqlite3.Connection, chain_id: UUID | str, *, schema: str = "queuert") -> list[Row]:
    """The chain's jobs in chain_index order, with the columns of the job
    table (nothing for an id that is not a chain's)."""
    with reading(conn, "read a chain's jobs"):
        found = rows(conn, statements(schema)["chain_jobs"], {"chain_id": check.job_id_text(chain_id, "chain_id")})
    return [job_row(r, ("seq", "open_blockers", "chain_completed_at")) for r in found]


def chain_blockers(conn: sqlite3.Connection, chain_id: UUID | str, *, schema: str = "queuert") -> dict[UUID, list[UUID]]:
    """The blocker chains of the chain's jobs, in position order, by job id
    (jobs without blockers are left out)."""
    with reading(conn, "read a chain's blockers"):
        found = rows(conn, statements(schema)["chain_blockers"], {"chain_id": check.job_id_text(chain_id, "chain_id")})
    blockers: dict[UUID, list[UUID]] = {}
    for job_id, blocker in found:
        blockers.setdefault(UUID(job_id), []).append(UUID(blocker))
    return blockers


def list_chains(
    conn: sqlite3.Connection,
    *,
    type_name: str | None = None,
    statuses: Sequence[str] | None = None,
    after: tuple[datetime, UUID | str] | None = None,
    limit: int = 50,
    schema: str = "queuert",
) -> list[Row]:
    """Chains newest first (created_at, then id), optionally of one type and
    some statuses, after the ``(created_at, chain_id)`` of a previous page."""
    if limit < 1:
        check.invalid(f"limit must be at least 1, got {limit}")
    params = {
        "type_name": type_name,
        "statuses": None if statuses is None else json.dumps(list(statuses)),
        "after_created_at": None if after is None else to_us(after[0]),
        "after_id": None if after is None else check.job_id_text(after[1], "after"),
        "limit": check.int32(limit, "limit"),
    }
    with reading(conn, "list chains"):
        found = rows(conn, statements(schema)["list_chains"], params)
    return [chain_row(r) for r in found]


def stats(conn: sqlite3.Connection, *, schema: str = "queuert") -> list[Row]:
    """One row per type and status: ``type_name, status, count,
    oldest_due_age`` (how long the oldest due pending job has waited)."""
    with reading(conn, "read stats"):
        found = rows(conn, statements(schema)["stats"], {"now": now_us()})
    return [
        {
            "type_name": type_name,
            "status": status,
            "count": count,
            "oldest_due_age": None if age is None else timedelta(microseconds=age),
        }
        for type_name, status, count, age in found
    ]
