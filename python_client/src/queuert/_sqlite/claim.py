"""claim and next_due_at (sqlite/sql/040_claim.sql)."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from datetime import timedelta as _td  # _td(0, 0, us): positional, ~0.1 us less than microseconds=us
from typing import Any

from . import _checks as check
from ._connection import one, reading, rows, writing
from ._rows import Row, job_row
from ._statements import statements
from ._values import EPOCH as _EPOCH
from ._values import from_json, from_us, ids_json, now_us, uuid_from_text

__all__ = ["WorkerClaim", "claim", "claim_for_worker", "next_due_at"]


def _type_filter(type_names: Sequence[str] | None) -> str | None:
    if type_names is None:
        return None
    if type(type_names) is tuple:  # a worker's types, the same every claim
        return _types_json(type_names)
    if isinstance(type_names, (str, bytes)):
        check.invalid(f"type_names must be a sequence of type names, got {type_names!r}")
    names = list(type_names)
    if any(not isinstance(n, str) for n in names):
        check.invalid("type_names must be a one-dimensional array of text")
    return json.dumps(names)


@functools.lru_cache(maxsize=64)
def _types_json(type_names: tuple[Any, ...]) -> str | None:
    return _type_filter(list(type_names))


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
    found, blockers, _now = _claim_rows(
        conn, worker_id, "claim", (None, _type_filter(type_names)), max_jobs, lease, schema
    )
    claimed = []
    for r in found:
        row = job_row(r[:-2])
        # the columns of queuert.job, then blockers and seq (PostgreSQL's order)
        row["blockers"] = from_json(blockers[r[0]]) if r[-1] else []
        row["seq"] = r[-2]
        claimed.append(row)
    claimed.sort(key=lambda r: (-r["priority"], r["scheduled_at"], r["seq"]))
    return claimed


def _claim_rows(
    conn: sqlite3.Connection,
    worker_id: str,
    statement: str,
    types: tuple[str | None, str | None],
    max_jobs: int | None,
    lease: timedelta | None,
    schema: str,
) -> tuple[list[tuple[Any, ...]], dict[str, str], int]:
    """The claiming UPDATE's raw rows (``statement``'s columns, ending
    with seq and blocker_count), the blockers (JSON text) of the claimed
    jobs that have some, by job id, and the claim's clock (epoch
    microseconds). ``types``: the type filter as the statement takes it,
    ``(type_name, type_names)`` (_worker_types)."""
    if worker_id is None or worker_id == "":
        check.invalid("claim needs a worker_id")
    check.check_text(worker_id, "worker_id")
    limit = 1 if max_jobs is None else check.int32(max_jobs, "max_jobs")
    if limit < 1:
        check.invalid(f"max_jobs must be at least 1, got {max_jobs}")
    lease_us = check.check_lease(lease)
    q = statements(schema)
    with writing(conn, schema, "claim jobs", single_write=True):
        now = now_us()
        found = rows(
            conn,
            q[statement],
            {
                "worker_id": worker_id,
                "type_name": types[0],
                "type_names": types[1],
                "max_jobs": limit,
                "lease": lease_us,
                "now": now,
            },
        )
        # RETURNING ends with seq, blocker_count
        waiting = [r[0] for r in found if r[-1]]
        blockers = dict(rows(conn, q["claim_blockers"], {"job_ids": ids_json(waiting)})) if waiting else {}
    return found, blockers, now


def claim_for_worker(
    conn: sqlite3.Connection,
    worker_id: str,
    type_names: Sequence[str] | None = None,
    max_jobs: int | None = 1,
    lease: timedelta | None = None,
    *,
    schema: str = "queuert",
) -> list[tuple[Any, ...]]:
    """claim, shaped for the worker: per job, in claim order, the tuple
    ``id, type_name, chain_id, chain_type_name, chain_index, input,
    priority, attempt, scheduled_at, created_at, leased_until,
    last_attempt_error, trace_context, blockers (JSON text), seq, now``
    (the PostgreSQL worker's claim columns: seq, the claim order, and the
    claim's clock last). Its own statement returns only these columns (and
    a worker of one type filters by equality); it builds no dict per job: a
    claim that takes one job per transaction spends most of its Python
    time there."""
    found, blockers, now_at = _claim_rows(
        conn, worker_id, "claim_for_worker", _worker_types(type_names), max_jobs, lease, schema
    )
    return _worker_rows(found, blockers, now_at, None)


def _worker_types(type_names: Sequence[str] | None) -> tuple[str | None, str | None]:
    """The claim statements' type filter for these types: ``(type_name,
    type_names)``, one type name (a worker's tuple of one: an equality),
    else a JSON list, or neither (any type)."""
    if type_names is not None and type(type_names) is tuple and len(type_names) == 1 and type(type_names[0]) is str:
        return type_names[0], None
    return None, _type_filter(type_names)


def _worker_row(r: tuple[Any, ...], blockers: str, now: datetime) -> tuple[Any, ...]:
    """One claim_for_worker tuple from a claim or pick statement's row (the
    same leading columns): ids as UUIDs, the input parsed, times as
    datetimes, the job's blocker outputs and the claim's clock last."""
    job_id = uuid_from_text(r[0])
    return (
        job_id,
        r[1],
        job_id if r[2] == r[0] else uuid_from_text(r[2]),
        r[3],
        r[4],
        None if r[5] is None else from_json(r[5]),
        r[6],
        r[7],
        _EPOCH + _td(0, 0, r[8]),
        _EPOCH + _td(0, 0, r[9]),
        _EPOCH + _td(0, 0, r[10]),
        r[11],
        r[12],
        blockers,
        r[13],
        now,
    )


def _worker_rows(
    found: list[tuple[Any, ...]], blockers: dict[str, str], now_at: int, texts: list[tuple[str, str]] | None
) -> list[tuple[Any, ...]]:
    """claim_for_worker's tuples from the statement's rows; ``texts``, when
    given, gets each job's id and chain id as stored (text), in the same
    order."""
    if not found:
        return []
    now = _EPOCH + _td(0, 0, now_at)
    claimed = [_worker_row(r, blockers[r[0]] if r[14] else "[]", now) for r in found]
    if len(claimed) > 1:
        # RETURNING comes back in no particular order
        order = sorted(range(len(claimed)), key=lambda i: (-claimed[i][6], claimed[i][8], claimed[i][14]))
        claimed = [claimed[i] for i in order]
        found = [found[i] for i in order]
    if texts is not None:
        texts.extend((r[0], r[2]) for r in found)
    return claimed


class WorkerClaim:
    """claim_for_worker for one worker's types, its arguments checked once.

    A worker claims with the same worker id, types and lease every time;
    this keeps the statement and its parameters, so a claim is the
    statement and the conversion of its rows. It runs in the caller's
    open write transaction (``BEGIN IMMEDIATE``, which the worker's store
    always begins first), on a connection whose rows are tuples and text
    str (the worker's own; a handler that changed either on ``job.conn``
    gets the checked path of claim_for_worker).
    """

    __slots__ = (
        "worker_id",
        "type_names",
        "lease",
        "schema",
        "_statement",
        "_one_job",
        "_blockers",
        "_params",
        "_pick",
        "_pick_params",
        "_claim_picked",
    )

    def __init__(
        self,
        worker_id: str,
        type_names: Sequence[str] | None,
        lease: timedelta | None,
        *,
        schema: str = "queuert",
    ) -> None:
        if worker_id is None or worker_id == "":
            check.invalid("claim needs a worker_id")
        check.check_text(worker_id, "worker_id")
        type_name, types = _worker_types(type_names)
        q = statements(schema)
        self.worker_id = worker_id
        self.type_names = type_names
        self.lease = lease
        self.schema = schema
        self._statement = q["claim_for_worker"]
        # a claim of one job: `=`, not IN
        self._one_job = q["claim_for_worker_one_job"]
        self._blockers = q["claim_blockers"]
        self._params: dict[str, Any] = {
            "worker_id": worker_id,
            "type_name": type_name,
            "type_names": types,
            "max_jobs": 1,
            "lease": check.check_lease(lease),
            "now": 0,
        }
        self._pick = q["pick_for_worker"]
        self._pick_params: dict[str, Any] = {
            "type_name": type_name,
            "type_names": types,
            "lease": self._params["lease"],
            "now": 0,
        }
        self._claim_picked = q["claim_picked"]

    def __call__(
        self, conn: sqlite3.Connection, max_jobs: int, texts: list[tuple[str, str]] | None = None
    ) -> list[tuple[Any, ...]]:
        """Claim up to ``max_jobs`` (claim_for_worker's tuples)."""
        if conn.row_factory is not None or conn.text_factory is not str or not conn.in_transaction:
            claimed = claim_for_worker(
                conn, self.worker_id, self.type_names, max_jobs, self.lease, schema=self.schema
            )
            if texts is not None:
                texts.extend((str(c[0]), str(c[2])) for c in claimed)
            return claimed
        if max_jobs < 1 or max_jobs > _INT32_MAX:
            check.int32(max_jobs, "max_jobs")
            check.invalid(f"max_jobs must be at least 1, got {max_jobs}")
        params = self._params
        params["max_jobs"] = max_jobs
        now = params["now"] = now_us()
        sql = self._one_job if max_jobs == 1 else self._statement
        found = conn.execute(sql, params).fetchall()
        waiting = [r[0] for r in found if r[-1]]
        blockers = dict(conn.execute(self._blockers, {"job_ids": ids_json(waiting)}).fetchall()) if waiting else {}
        return _worker_rows(found, blockers, now, texts)


    def pick(self, conn: sqlite3.Connection) -> tuple[tuple[Any, ...], int, tuple[str, str, int, int]] | None:
        """The job ``self(conn, 1)`` would claim, without writing the claim
        (pick_for_worker; ``claim_picked`` writes it): its claim_for_worker
        tuple, its lease's end (epoch microseconds), and its id, chain id,
        chain index and has_dependents as stored (complete_job's RETURNING,
        for complete_picked). In the caller's open write transaction, on the
        worker's own connection (tuples, str): the caller has checked. None:
        nothing is due. One row, converted here (an atomic slot's every
        claim)."""
        params = self._pick_params
        now = params["now"] = now_us()
        found = conn.execute(self._pick, params).fetchall()
        if not found:
            return None
        r = found[0]
        if r[14]:
            blockers = dict(conn.execute(self._blockers, {"job_ids": ids_json([r[0]])}).fetchall())[r[0]]
        else:
            blockers = "[]"
        row = _worker_row(r, blockers, _EPOCH + _td(0, 0, now))
        return row, r[10], (r[0], r[2], r[4], r[15])

    def claim_picked(self, conn: sqlite3.Connection, seq: int, attempt: int, leased_until_us: int) -> bool:
        """Write the claim of a picked job (its seq, its new attempt and
        lease end as picked), in the pick's transaction. False: the job was
        no longer pending at the attempt before (nothing written)."""
        cur = conn.execute(
            self._claim_picked,
            {"seq": seq, "attempt": attempt, "worker_id": self.worker_id, "leased_until": leased_until_us},
        )
        return cur.rowcount == 1


_INT32_MAX = 2**31 - 1


def next_due_at(
    conn: sqlite3.Connection, type_names: Sequence[str] | None = None, *, schema: str = "queuert"
) -> datetime | None:
    """When the next pending job of these types (None: any) becomes due."""
    types = _type_filter(type_names)
    with reading(conn, "read next_due_at"):
        row = one(conn, statements(schema)["next_due_at"], {"type_names": types})
    return None if row is None else from_us(row[0])
