"""The job a single-job call acts on, checked against the shared ownership
and fencing rule (``job_for_action`` in sqlite/sql/010_common.sql), and the
chains a completion finished."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, NamedTuple

from . import _checks as check
from ._connection import one, rows, run
from ._errors import engine_error
from ._values import ids_json

__all__ = ["ActionJob", "batch_outcomes", "finish_chains", "job_for_action"]


class ActionJob(NamedTuple):
    id: str
    chain_id: str
    chain_type_name: str
    chain_index: int
    type_name: str
    status: str
    attempt: int
    priority: int
    trace_context: str | None
    continued_to: str | None
    #: 'repeat' for a continue_with repeated by whoever made the first call
    code: str | None


def job_for_action(
    conn: sqlite3.Connection,
    q: dict[str, str],
    job_id: str,
    worker_id: Any,
    attempt: Any,
    action: str,
    outside_statuses: Sequence[str],
) -> ActionJob:
    """The job, or the refusal: QU001 when it does not exist, QU003/QU004
    when the rule says no (the message names the job, as in PostgreSQL)."""
    check.check_text(worker_id, "worker_id")
    found = one(
        conn,
        q["job_for_action"],
        {
            "job_id": job_id,
            "worker_id": worker_id,
            "attempt": check.optional_int(attempt, "attempt"),
            "action": action,
            "outside_statuses": json.dumps(list(outside_statuses)),
        },
    )
    if found is None:
        raise engine_error("QU001", f"job {job_id} not found", f"job_id={job_id}")
    job = ActionJob(*found[:11])
    code, message, detail = found[10:13]
    if code is not None and code != "repeat":
        raise engine_error(code, message, detail)
    return job


def finish_chains(
    conn: sqlite3.Connection,
    q: dict[str, str],
    completed: Sequence[tuple[Any, ...]],
    now: int,
    traces: dict[str, str] | None = None,
    dependents: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, list[str]]:
    """Resolve the chains that the completing statement just completed:
    record their completion on the roots of later jobs, unblock their
    dependents, and return the types of the dependents made pending, by the
    completed chain they are reported on (sorted, one per job: a type
    repeats for each job of it, so its count is the wake budget).

    ``completed`` are the (job_id, chain_id, chain_index, has_dependents)
    rows of the completing statement; every one completed its chain (only
    a chain's last job can be completed).

    Telemetry (migration 0004): ``traces`` maps a completed chain's id to
    the traceparent of the span that completed it, written on the edges it
    resolves; ``dependents`` then gets, per such chain that jobs waited on,
    those jobs (``job_id, type_name, trace_context, pending``, as
    PostgreSQL's ``dependents``).
    """
    waited_on = [chain for _job, chain, index, flagged in completed if index == 0 and flagged]
    later = [chain for _job, chain, index, _flagged in completed if index > 0]
    if later:
        roots = rows(conn, q["complete_chain_roots"], {"chain_ids": json.dumps(later), "now": now})
        waited_on += [chain for chain, flagged in roots if flagged]
    if not waited_on:  # most chains: nothing waits on them
        return {}
    chain_ids = json.dumps(list(dict.fromkeys(waited_on)))
    traced = {chain: traces[chain] for chain in waited_on if traces and traces.get(chain)}
    if traced:
        run(conn, q["resolve_edges"], {"traces": json.dumps(traced)})
    touched = rows(conn, q["resolve_dependents"], {"chain_ids": chain_ids, "now": now})
    if traced and dependents is not None:
        for chain, job_id, type_name, trace_context, pending in rows(
            conn, q["blocker_dependents"], {"chain_ids": json.dumps(list(traced))}
        ):
            dependents.setdefault(chain, []).append(
                {"job_id": job_id, "type_name": type_name, "trace_context": trace_context, "pending": bool(pending)}
            )
    if not any(status == "pending" and left == 0 for status, left in touched):
        return {}
    found: dict[str, list[str]] = {}
    for by_chain, type_name in rows(conn, q["unblocked_by"], {"chain_ids": chain_ids}):
        found.setdefault(by_chain, []).append(type_name)
    return {chain: sorted(types) for chain, types in found.items()}


def batch_outcomes(
    conn: sqlite3.Connection, q: dict[str, str], ids: list[str], done: Any, done_outcome: str
) -> list[str]:
    """Per input element: ``done_outcome`` for the jobs the call changed,
    else not_found / taken / finished (batch_outcomes)."""
    if all(jid in done for jid in ids):
        return [done_outcome] * len(ids)
    return [
        outcome
        for _jid, outcome in rows(
            conn,
            q["batch_outcomes"],
            {"job_ids": ids_json(ids), "done": ids_json(list(done)), "done_outcome": done_outcome},
        )
    ]
