"""Argument checks of the SQLite engine: the PostgreSQL engine's QU006
refusals, same rules and messages, made before anything is written.

PL/pgSQL checks its arguments in the function; SQLite runs no code of ours,
so the Python layer checks them and converts them to the stored
representation (epoch microseconds, UUID text, JSON text).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn
from uuid import UUID

from ._errors import engine_error
from ._values import MAX_DURATION_US, to_us, us_of

__all__ = [
    "check_batch_worker",
    "check_type_name",
    "distinct_blockers",
    "duration_us",
    "id_list",
    "int32",
    "invalid",
    "job_id_text",
    "optional_int",
    "timestamp_us",
]

_INT32 = (-(2**31), 2**31 - 1)


def invalid(message: str, detail: str | None = None) -> NoReturn:
    """Refuse with QU006 (invalid argument)."""
    raise engine_error("QU006", message, detail)


def check_type_name(type_name: Any) -> str:
    if not isinstance(type_name, str) or not 1 <= len(type_name) <= 255:
        got = f"{len(type_name)} characters" if isinstance(type_name, str) else "NULL"
        if type_name is not None and not isinstance(type_name, str):
            got = f"a {type(type_name).__name__}"
        invalid(f"type name must be 1 to 255 characters, got {got}")
    return type_name


def int32(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not _INT32[0] <= value <= _INT32[1]:
        invalid(f"{what} must be a 32-bit integer, got {value!r}")
    return value


def optional_int(value: Any, what: str) -> int | None:
    return None if value is None else int32(value, what)


def duration_us(value: Any, what: str) -> int | None:
    """A timedelta in microseconds (None stays None), at most 1,000 years."""
    if value is None:
        return None
    if not isinstance(value, timedelta):
        invalid(f"{what} must be a timedelta, got {value!r}")
    us = us_of(value)
    if us > MAX_DURATION_US:
        invalid(f"{what} must be at most 1000 years, got {value}")
    return us


def timestamp_us(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        invalid(f"{what} must be a datetime, got {value!r}")
    return to_us(value)


def job_id_text(value: Any, what: str = "job_id") -> str:
    """A job or chain id as the stored text (canonical lower-case UUID)."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(UUID(value))
        except ValueError:
            pass
    invalid(f"{what} is not a UUID: {value!r}")


def id_list(values: Any, caller: str, what: str = "job ids") -> list[str]:
    """A list of ids without NULLs (QU006 naming the caller otherwise)."""
    if values is None or isinstance(values, (str, bytes, UUID)) or not isinstance(values, Iterable):
        invalid(f"{caller} needs an array of {what} without NULLs")
    items = list(values)
    if any(v is None or isinstance(v, (list, tuple)) for v in items):
        invalid(f"{caller} needs an array of {what} without NULLs")
    return [job_id_text(v, what) for v in items]


def check_batch_worker(caller: str, worker_id: Any, job_ids: Any) -> list[str]:
    """The worker id and id list of a fenced batch call (complete_jobs,
    fail_jobs, renew_leases, release_jobs)."""
    if worker_id is None or job_ids is None or isinstance(job_ids, (str, bytes)):
        invalid(f"{caller} needs a worker_id and an array of job ids without NULLs")
    if not isinstance(worker_id, str):
        invalid(f"{caller} needs a worker_id (text), got {worker_id!r}")
    items = list(job_ids)
    if any(v is None or isinstance(v, (list, tuple)) for v in items):
        invalid(f"{caller} needs a worker_id and an array of job ids without NULLs")
    return [job_id_text(v) for v in items]


def distinct_blockers(blockers: Sequence[Any] | None) -> list[str]:
    """Blocker chain ids, distinct, in first-seen order; NULL is QU006."""
    if blockers is None:
        return []
    if isinstance(blockers, (str, bytes, UUID)):
        invalid(f"blockers must be a sequence of chain ids, got {blockers!r}")
    out: dict[str, None] = {}
    for b in blockers:
        if b is None:
            invalid("blockers must not contain NULL")
        if isinstance(b, (list, tuple)):
            invalid("blockers must be a one-dimensional array")
        out[job_id_text(b, "blocker")] = None
    return list(out)


def check_schedule(schedule_at: Any, schedule_after: Any) -> tuple[int | None, int | None]:
    """``(schedule_at, schedule_after)`` in microseconds: never both, never a
    negative delay (the engine's SQL clamps a past time to now)."""
    if schedule_at is not None and schedule_after is not None:
        invalid("give schedule_at or schedule_after, not both")
    after = None
    if schedule_after is not None:
        if not isinstance(schedule_after, timedelta):
            invalid(f"schedule_after must be a timedelta, got {schedule_after!r}")
        if schedule_after < timedelta(0):
            invalid(f"schedule_after must not be negative, got {schedule_after}")
        after = duration_us(schedule_after, "schedule_after")
    return timestamp_us(schedule_at, "schedule_at"), after


def check_dedup(dedup_key: Any, dedup_scope: Any, dedup_window: Any) -> tuple[str, int | None]:
    """``(scope, window)``: the scope is 'incomplete' or 'any', the window
    not negative, the key (indexed) at most 1,024 bytes."""
    scope = "incomplete" if dedup_scope is None else dedup_scope
    if scope not in ("incomplete", "any"):
        invalid(f"unknown dedup scope {_literal(scope)} (use 'incomplete' or 'any')")
    window = None
    if dedup_window is not None:
        if not isinstance(dedup_window, timedelta):
            invalid(f"dedup_window must be a timedelta, got {dedup_window!r}")
        if dedup_window < timedelta(0):
            invalid(f"dedup_window must not be negative, got {dedup_window}")
        # A longer window matches everything a 1000-year one does.
        window = min(us_of(dedup_window), MAX_DURATION_US)
    if dedup_key is not None:
        if not isinstance(dedup_key, str):
            invalid(f"dedup_key must be text, got {dedup_key!r}")
        size = len(dedup_key.encode("utf-8"))
        if size > 1024:
            invalid(f"dedup_key must be at most 1024 bytes, got {size}")
    return scope, window


def check_text(value: Any, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        invalid(f"{what} must be text, got {value!r}")
    return value


def check_lease(lease: Any) -> int | None:
    us = duration_us(lease, "lease")
    if us is not None and us <= 0:
        invalid(f"lease must be positive, got {lease}")
    return us


def check_multiplier(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        invalid(f"backoff_multiplier must be a finite number >= 1, got {value!r}")
    number = float(value)
    if math.isnan(number) or math.isinf(number) or number < 1:
        invalid(f"backoff_multiplier must be a finite number >= 1, got {value!r}")
    return number


def _literal(value: Any) -> str:
    text = str(value)
    return "'" + text.replace("'", "''") + "'"
