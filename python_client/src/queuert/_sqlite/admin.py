"""trigger_jobs, retry_jobs, cancel_chains, delete_chains and set_job_type
(sqlite/sql/080_trigger_retry.sql, 090_cancel_delete.sql, 020_job_type.sql)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

from . import _checks as check
from ._connection import one, rows, writing
from ._errors import engine_error
from ._notices import announce
from ._rows import Row
from ._statements import statements
from ._values import MAX_DURATION_US, from_us, ids_json, now_us, us_of

__all__ = ["cancel_chains", "delete_chains", "retry_jobs", "set_job_type", "trigger_jobs"]


def _check_statuses(
    conn: sqlite3.Connection, q: dict[str, str], ids: list[str], allowed: Sequence[str], action: str
) -> None:
    """All or nothing: an unknown id is QU001, another status QU003."""
    bad = one(conn, q["job_not_allowed"], {"job_ids": ids_json(ids), "allowed": json.dumps(list(allowed))})
    if bad is None:
        return
    job_id, status = bad
    if status is None:
        raise engine_error("QU001", f"job {job_id} not found", f"job_id={job_id}")
    raise engine_error(
        "QU003",
        f"cannot {action} job {job_id}: it is {status}, not {' or '.join(allowed)}",
        f"job_id={job_id}, status={status}",
    )


def trigger_jobs(conn: sqlite3.Connection, job_ids: Sequence[UUID | str], *, schema: str = "queuert") -> list[Row]:
    """Make pending jobs due now (DESIGN.md ``trigger_jobs``); rows
    ``job_id`` per distinct job, in input order."""
    ids = list(dict.fromkeys(check.id_list(job_ids, "trigger")))
    if not ids:
        return []
    q = statements(schema)
    with writing(conn, schema, "trigger jobs"):
        _check_statuses(conn, q, ids, ("pending",), "trigger")
        types = rows(conn, q["trigger_jobs"], {"job_ids": ids_json(ids), "now": now_us()})
    announce(ready_types=dict.fromkeys(t for (t,) in types))
    return [{"job_id": UUID(jid)} for jid in ids]


def retry_jobs(conn: sqlite3.Connection, job_ids: Sequence[UUID | str], *, schema: str = "queuert") -> list[Row]:
    """Failed or cancelled jobs run again with attempt 0 (DESIGN.md
    ``retry_jobs``); rows ``job_id`` per distinct job, in input order."""
    ids = list(dict.fromkeys(check.id_list(job_ids, "retry")))
    if not ids:
        return []
    q = statements(schema)
    with writing(conn, schema, "retry jobs"):
        _check_statuses(conn, q, ids, ("failed", "cancelled"), "retry")
        retried = rows(conn, q["retry_jobs"], {"job_ids": ids_json(ids), "now": now_us()})
    announce(ready_types=dict.fromkeys(t for t, status in retried if status == "pending"))
    return [{"job_id": UUID(jid)} for jid in ids]


def _given_chains(chain_ids: Any, action: str) -> list[str | None]:
    """The chain ids as text; ids that cannot be chain ids (NULL, malformed)
    become None and are skipped, as unknown and non-root ids are."""
    if chain_ids is None or isinstance(chain_ids, (str, bytes, UUID)):
        check.invalid(f"{action} needs a one-dimensional array of chain ids")
    given: list[str | None] = []
    for c in chain_ids:
        if isinstance(c, (list, tuple)):
            check.invalid(f"{action} needs a one-dimensional array of chain ids")
        given.append(None if c is None else _maybe_id(c))
    return given


def _chain_set(
    conn: sqlite3.Connection, q: dict[str, str], given: list[str | None], cascade: bool | None, action: str
) -> list[str]:
    """The chains to act on (with cascade, and transitively, the chains they
    wait on); QU005 when a job outside the set waits on one of them."""
    name = "chain_set_cascade" if cascade else "chain_set"
    chain_set = [r[0] for r in rows(conn, q[name], {"chain_ids": json.dumps(given)})]
    bad = one(conn, q["chain_set_dependent"], {"chain_set": json.dumps(chain_set)})
    if bad is not None:
        chain, job = bad
        raise engine_error(
            "QU005",
            f"cannot {action} chain {chain}: job {job} outside the set waits on it",
            f"chain_id={chain}, job_id={job}",
        )
    return chain_set


def _maybe_id(value: Any) -> str | None:
    try:
        return str(value if isinstance(value, UUID) else UUID(str(value)))
    except ValueError:
        return None


def _in_input_order(chains: Sequence[str], given: list[str | None]) -> list[UUID]:
    order: dict[str, int] = {}
    for n, c in enumerate(given):
        if c is not None:
            order.setdefault(c, n)
    ranked = sorted(dict.fromkeys(chains), key=lambda c: (order.get(c, len(given)), c))
    return [UUID(c) for c in ranked]


def cancel_chains(
    conn: sqlite3.Connection,
    chain_ids: Sequence[UUID | str | None],
    cascade: bool | None = False,
    *,
    schema: str = "queuert",
) -> list[Row]:
    """Cancel every unfinished job of the chains (DESIGN.md
    ``cancel_chains``); rows ``chain_id`` per chain that had a job cancelled,
    in input order (chains added by cascade after them)."""
    given = _given_chains(chain_ids, "cancel")
    q = statements(schema)
    with writing(conn, schema, "cancel chains"):
        chain_set = _chain_set(conn, q, given, cascade, "cancel")
        if not chain_set:
            return []
        members = json.dumps(chain_set)
        lost = [r[0] for r in rows(conn, q["chain_set_running"], {"chain_set": members})]
        cancelled = [r[0] for r in rows(conn, q["cancel_chains"], {"chain_set": members})]
    announce(lost_jobs=lost)
    return [{"chain_id": c} for c in _in_input_order(cancelled, given)]


def delete_chains(
    conn: sqlite3.Connection,
    chain_ids: Sequence[UUID | str | None],
    cascade: bool | None = False,
    *,
    schema: str = "queuert",
) -> list[Row]:
    """Delete the chains' jobs and blocker rows (DESIGN.md
    ``delete_chains``); rows ``chain_id`` per deleted chain."""
    given = _given_chains(chain_ids, "delete")
    q = statements(schema)
    with writing(conn, schema, "delete chains"):
        chain_set = _chain_set(conn, q, given, cascade, "delete")
        if not chain_set:
            return []
        members = json.dumps(chain_set)
        lost = [r[0] for r in rows(conn, q["chain_set_running"], {"chain_set": members})]
        rows(conn, q["delete_chain_edges"], {"chain_set": members})
        rows(conn, q["delete_chains"], {"chain_set": members})
    announce(lost_jobs=lost)
    return [{"chain_id": c} for c in _in_input_order(chain_set, given)]


def set_job_type(
    conn: sqlite3.Connection,
    type_name: str,
    max_attempts: int | None = None,
    backoff_initial: timedelta | None = timedelta(seconds=10),
    backoff_multiplier: float | None = 2.0,
    backoff_max: timedelta | None = timedelta(minutes=5),
    lease: timedelta | None = timedelta(seconds=60),
    *,
    schema: str = "queuert",
) -> Row:
    """Set the whole retry and lease policy of a job type (an upsert; omitted
    or None arguments take the defaults). Returns the job_type row."""
    check.check_type_name(type_name)
    if max_attempts is not None and check.int32(max_attempts, "max_attempts") < 1:
        check.invalid(f"max_attempts must be at least 1 or NULL, got {max_attempts}")
    initial = timedelta(seconds=10) if backoff_initial is None else backoff_initial
    largest = timedelta(minutes=5) if backoff_max is None else backoff_max
    lease = timedelta(seconds=60) if lease is None else lease
    multiplier = 2.0 if backoff_multiplier is None else backoff_multiplier
    for what, value in (("backoff_initial", initial), ("backoff_max", largest), ("lease", lease)):
        if not isinstance(value, timedelta):
            check.invalid(f"{what} must be a timedelta, got {value!r}")
    if initial < timedelta(0) or largest < timedelta(0):
        check.invalid("backoff_initial and backoff_max must not be negative")
    factor = check.check_multiplier(multiplier)
    if max(us_of(initial), us_of(largest), us_of(lease)) > MAX_DURATION_US:
        check.invalid("backoff_initial, backoff_max and lease must be at most 1000 years")
    if lease <= timedelta(0):
        check.invalid(f"lease must be positive, got {lease}")
    q = statements(schema)
    with writing(conn, schema, "set a job type"):
        row = one(
            conn,
            q["set_job_type"],
            {
                "type_name": type_name,
                "max_attempts": max_attempts,
                "backoff_initial": us_of(initial),
                "backoff_multiplier": factor,
                "backoff_max": us_of(largest),
                "lease": us_of(lease),
                "now": now_us(),
            },
        )
    assert row is not None
    name, attempts, initial_us, mult, max_us, lease_us, updated_at = row
    return {
        "type_name": name,
        "max_attempts": attempts,
        "backoff_initial": timedelta(microseconds=initial_us),
        "backoff_multiplier": float(mult),
        "backoff_max": timedelta(microseconds=max_us),
        "lease": timedelta(microseconds=lease_us),
        "updated_at": from_us(updated_at),
    }
