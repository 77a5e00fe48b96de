"""claim and next_due_at (sqlite/sql/040_claim.sql)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta

from . import _checks as check
from ._connection import one, reading, rows, writing
from ._rows import Row, job_row
from ._statements import statements
from ._values import from_json, from_us, ids_json, now_us

__all__ = ["claim", "next_due_at"]


def _type_filter(type_names: Sequence[str] | None) -> str | None:
    if type_names is None:
        return None
    if isinstance(type_names, (str, bytes)):
        check.invalid(f"type_names must be a sequence of type names, got {type_names!r}")
    names = list(type_names)
    if any(not isinstance(n, str) for n in names):
        check.invalid("type_names must be a one-dimensional array of text")
    return json.dumps(names)


def claim(
    conn: sqlite3.Connection,
    worker_id: str,
    type_names: Sequence[str] | None = None,
    max_jobs: int | None = 1,
    lease: timedelta | None = None,
    *,
    schema: str = "queuert",
) -> list[Row]:
    """Claim up to ``max_jobs`` due pending jobs (DESIGN.md ``claim``).

    Rows in claim order (priority DESC, scheduled_at, seq): the job's
    columns, then ``blockers`` (the blocker chains' ids, types and final
    outputs, in blocker order) and ``seq``.
    """
    if worker_id is None or worker_id == "":
        check.invalid("claim needs a worker_id")
    check.check_text(worker_id, "worker_id")
    limit = 1 if max_jobs is None else check.int32(max_jobs, "max_jobs")
    if limit < 1:
        check.invalid(f"max_jobs must be at least 1, got {max_jobs}")
    lease_us = check.check_lease(lease)
    types = _type_filter(type_names)
    q = statements(schema)
    with writing(conn, schema, "claim jobs", single_write=True):
        found = rows(
            conn,
            q["claim_any"] if types is None else q["claim_types"],
            {
                "worker_id": worker_id,
                "type_names": types,
                "max_jobs": limit,
                "lease": lease_us,
                "now": now_us(),
            },
        )
        # RETURNING ends with seq, blocker_count
        waiting = [r[0] for r in found if r[-1]]
        blockers = dict(rows(conn, q["claim_blockers"], {"job_ids": ids_json(waiting)})) if waiting else {}
    claimed = []
    for r in found:
        row = job_row(r[:-2])
        # the columns of queuert.job, then blockers and seq (PostgreSQL's order)
        row["blockers"] = from_json(blockers[r[0]]) if r[-1] else []
        row["seq"] = r[-2]
        claimed.append(row)
    claimed.sort(key=lambda r: (-r["priority"], r["scheduled_at"], r["seq"]))
    return claimed


def next_due_at(
    conn: sqlite3.Connection, type_names: Sequence[str] | None = None, *, schema: str = "queuert"
) -> datetime | None:
    """When the next pending job of these types (None: any) becomes due."""
    types = _type_filter(type_names)
    with reading(conn, "read next_due_at"):
        row = one(conn, statements(schema)["next_due_at"], {"type_names": types})
    return None if row is None else from_us(row[0])
