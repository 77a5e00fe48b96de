"""start_chain: a chain's root job, created in the caller's transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from . import _checks as check
from ._connection import one, run, writing
from ._errors import engine_error
from ._notices import announce
from ._rows import Row
from ._statements import statements
from ._values import EPOCH as _EPOCH
from ._values import from_us, new_job_id, new_job_ids, now_us, to_json

__all__ = ["blocker_count", "start_chain", "start_plain"]


def blocker_count(conn: sqlite3.Connection, q: dict[str, str], blockers: list[str]) -> int:
    """How many of a new job's blocker chains are incomplete; a blocker that
    is not a chain is QU002."""
    if not blockers:
        return 0
    state = one(conn, q["blocker_state"], {"blockers": json.dumps(blockers)})
    assert state is not None  # an aggregate row, always there
    missing, open_count = state
    if missing is not None:
        raise engine_error("QU002", f"blocker chain {missing} not found", f"chain_id={missing}")
    return int(open_count)


def start_plain(
    conn: sqlite3.Connection, type_name: str, payload: str | None, trace_context: str | None, schema: str
) -> tuple[UUID, datetime]:
    """The common start: a checked type name and JSON text, nothing to look
    up, one INSERT (as PostgreSQL's start_chain has its own path for it).
    The new chain's id and its creation time (it is pending, due then)."""
    chain_id, job_id = new_job_ids()
    with writing(conn, schema, "start a chain", single_write=True):
        now = now_us()
        run(conn, statements(schema)["start_chain_plain"], (job_id, type_name, job_id, type_name, payload, now, now, trace_context))
    announce(ready_types=(type_name,))
    return chain_id, _EPOCH + timedelta(microseconds=now)


def start_chain(
    conn: sqlite3.Connection,
    type_name: str,
    input: Any = None,
    id: UUID | str | None = None,
    schedule_at: datetime | None = None,
    schedule_after: timedelta | None = None,
    blockers: Sequence[UUID | str] | None = None,
    dedup_key: str | None = None,
    dedup_scope: str | None = "incomplete",
    dedup_window: timedelta | None = None,
    priority: int | None = 0,
    trace_context: str | None = None,
    *,
    schema: str = "queuert",
) -> Row:
    """Create a chain's root job (DESIGN.md ``start_chain``).

    Returns ``id, chain_id, type_name, status, scheduled_at, created_at,
    deduplicated``; a dedup hit writes nothing and returns the existing chain.
    """
    q = statements(schema)
    if (
        id is None and schedule_at is None and schedule_after is None and blockers is None
        and dedup_key is None and dedup_window is None and dedup_scope in ("incomplete", "any", None)
        and type(type_name) is str and 0 < len(type_name) <= 255
        and (priority is None or (type(priority) is int and priority == 0)) and (trace_context is None or type(trace_context) is str)
    ):
        chain_id, created = start_plain(conn, type_name, to_json(input), trace_context, schema)
        return {
            "id": chain_id, "chain_id": chain_id, "type_name": type_name, "status": "pending",
            "scheduled_at": created, "created_at": created, "deduplicated": False,
        }

    check.check_type_name(type_name)
    scope, window = check.check_dedup(dedup_key, dedup_scope, dedup_window)
    at, after = check.check_schedule(schedule_at, schedule_after)
    wanted = check.distinct_blockers(blockers)
    params: dict[str, Any] = {
        "id": new_job_id() if id is None else check.job_id_text(id, "id"),
        "type_name": type_name,
        "input": to_json(input),
        "priority": 0 if priority is None else check.int32(priority, "priority"),
        "schedule_at": at,
        "schedule_after": after,
        "dedup_key": dedup_key,
        "trace_context": check.check_text(trace_context, "trace_context"),
        "open_blockers": 0,
        "blocker_count": len(wanted),
    }
    with writing(conn, schema, "start a chain"):
        now = params["now"] = now_us()
        if dedup_key is not None:
            found = one(
                conn,
                q["find_dedup_match"],
                {
                    "type_name": type_name,
                    "dedup_key": dedup_key,
                    "dedup_scope": scope,
                    "dedup_window": window,
                    "now": now,
                },
            )
            if found is not None:
                return {
                    "id": UUID(found[0]),
                    "chain_id": UUID(found[0]),
                    "type_name": found[1],
                    "status": found[2],
                    "scheduled_at": from_us(found[3]),
                    "created_at": from_us(found[4]),
                    "deduplicated": True,
                }
        params["open_blockers"] = blocker_count(conn, q, wanted)
        inserted = one(conn, q["start_chain"], params)
        if inserted is None:
            job_id = params["id"]
            raise engine_error("QU006", f"a job with id {job_id} already exists", f"job_id={job_id}")
        if wanted:
            run(
                conn,
                q["insert_blockers"],
                {"job_id": params["id"], "blockers": json.dumps(wanted), "trace_context": params["trace_context"]},
            )
    status, scheduled_at = inserted
    if status == "pending":
        announce(ready_types=(type_name,))
    chain_id = UUID(params["id"])
    return {
        "id": chain_id,
        "chain_id": chain_id,
        "type_name": type_name,
        "status": status,
        "scheduled_at": from_us(scheduled_at),
        "created_at": from_us(now),
        "deduplicated": False,
    }
