"""Result rows of the SQLite engine, shaped like the PostgreSQL engine's.

Every operation returns rows as dicts with the column names, order and
Python types psycopg gives for the PostgreSQL function: UUIDs, aware UTC
datetimes, timedeltas, decoded JSON, status as text. So the client's
``StartedChain.from_row``, ``Job.from_row`` and ``Chain.from_row`` read
them unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta as _td
from typing import Any, Dict

from ._values import EPOCH as _EPOCH
from ._values import from_json, from_us, uuid_from_text, uuid_of

__all__ = [
    "CHAIN_COLUMNS",
    "JOB_COLUMNS",
    "Row",
    "chain_row",
    "job_row",
]

_loads = from_json
_uuid = uuid_from_text

#: One result row: column name -> value, in the PostgreSQL function's order.
Row = Dict[str, Any]

#: The columns of queuert.job that claim and chain_jobs return, in order
#: (sqlite/sql/040_claim.sql, 100_inspection.sql).
JOB_COLUMNS = (
    "id",
    "type_name",
    "chain_id",
    "chain_type_name",
    "chain_index",
    "input",
    "output",
    "status",
    "priority",
    "attempt",
    "scheduled_at",
    "created_at",
    "completed_at",
    "completed_by",
    "leased_by",
    "leased_until",
    "last_attempt_at",
    "last_attempt_error",
    "continued_to",
    "dedup_key",
    "trace_context",
)
_JOB_CONVERT = {
    "id": uuid_of,
    "chain_id": uuid_of,
    "continued_to": uuid_of,
    "input": from_json,
    "output": from_json,
    "scheduled_at": from_us,
    "created_at": from_us,
    "completed_at": from_us,
    "leased_until": from_us,
    "last_attempt_at": from_us,
    "chain_completed_at": from_us,
}

CHAIN_COLUMNS = (
    "chain_id",
    "type_name",
    "status",
    "current_job_id",
    "current_type_name",
    "job_count",
    "created_at",
    "completed_at",
    "output",
)
_CHAIN_CONVERT = {
    "chain_id": uuid_of,
    "current_job_id": uuid_of,
    "created_at": from_us,
    "completed_at": from_us,
    "output": from_json,
}


def _convert(names: Sequence[str], convert: dict[str, Any], values: Sequence[Any]) -> Row:
    row: Row = {}
    for name, value in zip(names, values):
        fn = convert.get(name)
        row[name] = value if fn is None or value is None else fn(value)
    return row


def job_row(v: Sequence[Any], extra: Sequence[str] = ()) -> Row:
    """A job row: JOB_COLUMNS, then the ``extra`` columns that follow them
    (``seq`` and the engine's internal columns for chain_jobs).

    Spelled out column by column rather than looped: claim builds one per
    claimed job, and this is most of its time in Python.
    """
    job_id = _uuid(v[0])
    row: Row = {
        "id": job_id,
        "type_name": v[1],
        "chain_id": job_id if v[2] == v[0] else _uuid(v[2]),
        "chain_type_name": v[3],
        "chain_index": v[4],
        "input": None if v[5] is None else _loads(v[5]),
        "output": None if v[6] is None else _loads(v[6]),
        "status": v[7],
        "priority": v[8],
        "attempt": v[9],
        "scheduled_at": _EPOCH + _td(microseconds=v[10]),
        "created_at": _EPOCH + _td(microseconds=v[11]),
        "completed_at": None if v[12] is None else _EPOCH + _td(microseconds=v[12]),
        "completed_by": v[13],
        "leased_by": v[14],
        "leased_until": None if v[15] is None else _EPOCH + _td(microseconds=v[15]),
        "last_attempt_at": None if v[16] is None else _EPOCH + _td(microseconds=v[16]),
        "last_attempt_error": v[17],
        "continued_to": None if v[18] is None else _uuid(v[18]),
        "dedup_key": v[19],
        "trace_context": v[20],
    }
    if extra:
        row.update(_convert(extra, _JOB_CONVERT, v[len(JOB_COLUMNS):]))
    return row


def chain_row(values: Sequence[Any]) -> Row:
    return _convert(CHAIN_COLUMNS, _CHAIN_CONVERT, values)

