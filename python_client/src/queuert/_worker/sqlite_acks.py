"""How the SQLite store writes a batch of acknowledgements: one engine call
per kind of outcome, in the caller's open transaction, each job's result
sorted into a ``Written`` (only ``sqlite_store`` uses this module)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import queuert._sqlite as qs
from queuert._sqlite._values import Json
from queuert._worker.outcomes import Ack, Completed, Failed, by_kind
from queuert._worker.store import JobLost, Rejected, Written


def _continuation_args(cont: Any) -> dict[str, Any]:
    """continue_with's keyword arguments for a handler's Continuation."""
    return {
        "type_name": cont.type_name,
        "input": cont.input_json,  # validated and dumped to JSON values by the Continuation
        "id": cont.id,
        "schedule_at": cont.schedule_at,
        "schedule_after": cont.schedule_after,
        "blockers": list(cont.blockers) if cont.blockers is not None else None,
        "priority": cont.priority,
        "trace_context": cont.trace_context,
    }


def write_acks(
    conn: sqlite3.Connection,
    worker_id: str,
    acks: Sequence[Ack],
    written: Written,
    *,
    schema: str,
    single: bool,
    texts: tuple[Any, str, str] | None = None,
) -> None:
    """Write ``acks`` in the open transaction: one engine call per kind, an
    outcome per job into ``written``. A continuation the engine refuses
    (not for being lost) raises Rejected; with ``single`` a lost
    continuation raises JobLost (acknowledge's contract). ``texts``: an
    atomic attempt's job (UUID, id and chain id as the claim returned them),
    so its completion formats no UUID."""
    completes: Sequence[Ack]
    continues: Sequence[Ack]
    fails: Sequence[Ack]
    releases: Sequence[Ack]
    if len(acks) == 1 and type(acks[0].outcome) is Completed:  # atomic mode's usual acknowledgement
        completes, continues, fails, releases = acks, (), (), ()
    else:
        completes, continues, fails, releases = by_kind(acks)
    if completes:
        results: list[tuple[str, list[str]]]
        chain_text: str | None = None
        if len(completes) == 1:
            ack = completes[0]
            job = ack.job
            known = texts is not None and texts[0] is job.id
            if known:
                job_id: Any = texts[1]  # type: ignore[index]
                chain_text = texts[2]  # type: ignore[index]
            else:
                job_id = job.id
            results = [
                qs.complete_one(
                    conn, worker_id, job_id, ack.outcome.output_json, job.attempt, schema=schema  # type: ignore[union-attr]
                )
            ]
        else:
            rows = qs.complete_jobs(
                conn,
                worker_id,
                [a.job.id for a in completes],
                [None if a.outcome.output_json is None else Json(a.outcome.output_json) for a in completes],  # type: ignore[union-attr]
                [a.job.attempt for a in completes],
                schema=schema,
            )
            results = [(row["outcome"], row["unblocked_types"]) for row in rows]
        for ack, (outcome, unblocked) in zip(completes, results):
            if outcome == "completed":
                written.done.append(ack)
                written.chains.append(chain_text or str(ack.job.chain_id))
                written.count_unblocked(unblocked)
            else:
                written.lost.append((ack, outcome))
    if continues:
        rows = qs.continue_jobs(
            conn,
            worker_id,
            [a.job.id for a in continues],
            [_continuation_args(a.outcome.continuation) for a in continues],  # type: ignore[union-attr]
            [a.job.attempt for a in continues],
            schema=schema,
        )
        for ack, row in zip(continues, rows):
            outcome = row["outcome"]
            if outcome == "continued":
                written.done.append(ack)
                written.continued_to[ack.job.id] = (row["next"]["id"], row["next"]["status"])
                if row["next"]["status"] == "pending":
                    written.count_ready(row["next"]["type_name"])
            elif outcome == "refused":
                raise Rejected(row["error"])
            elif single:
                raise JobLost(str(row["error"]))
            else:
                written.lost.append((ack, outcome))
    if fails:
        now = datetime.now(timezone.utc)
        outcomes: list[Failed] = [a.outcome for a in fails]  # type: ignore[misc]
        # retry_after counts from this process's clock, which is the engine's
        rows = qs.fail_jobs(
            conn,
            worker_id,
            [a.job.id for a in fails],
            [o.error for o in outcomes],
            [o.asked_retry_at(now) for o in outcomes],
            [a.job.attempt for a in fails],
            schema=schema,
        )
        for ack, row in zip(fails, rows):
            if row["outcome"] == "failed":
                written.done.append(ack)
                if row["status"] == "pending":
                    written.count_ready(ack.job.type_name)
                    written.retry_at[ack.job.id] = row["scheduled_at"]
            else:
                written.lost.append((ack, row["outcome"]))
    if releases:
        rows = qs.release_jobs(
            conn, worker_id, [a.job.id for a in releases], [a.job.attempt for a in releases], schema=schema
        )
        for ack, row in zip(releases, rows):
            if row["outcome"] == "released":
                written.done.append(ack)
                written.count_ready(ack.job.type_name)
            else:
                written.lost.append((ack, row["outcome"]))
