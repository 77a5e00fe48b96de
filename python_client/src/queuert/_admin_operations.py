"""Client calls over job types, schedules and retention, written once for
both clients (as :mod:`queuert._operations` does for chains): set_job_type
with its limits, set_schedule, delete_schedule, list_schedules, prune.

They are PostgreSQL's: the SQLite engine has no limits, schedules or prune,
so their SQLite twin refuses with a clear error before anything is written
(``set_job_type`` without limits runs SQLite's own).
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from functools import partial
from typing import Any, NoReturn

from . import _statements as sql
from ._arguments import check_priority, json_text
from ._admin_records import JobTypePolicy, PruneResult, Schedule
from ._instructions import Call, Query
from ._job_type import JobType, _type_name_of, dump_payload
from ._schema_name import validate_schema_name
from ._sqlite import admin as lite_admin
from .errors import InvalidArgumentError

__all__ = ["delete_schedule", "list_schedules", "prune", "set_job_type", "set_schedule"]


def _postgres_only(what: str, conn: sqlite3.Connection) -> NoReturn:
    raise InvalidArgumentError(
        f"{what} needs PostgreSQL: the SQLite engine has no job limits, schedules or prune"
        " (docs/sqlite.md)"
    )


def _check_int(value: Any, what: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidArgumentError(f"{what} must be an int or None, got {value!r}")


def _check_delta(value: Any, what: str) -> None:
    if value is not None and not isinstance(value, timedelta):
        raise InvalidArgumentError(f"{what} must be a timedelta or None, got {value!r}")


def set_job_type(
    schema: str,
    type_name: str,
    *,
    max_attempts: int | None,
    backoff_initial: timedelta | None,
    backoff_multiplier: float | None,
    backoff_max: timedelta | None,
    lease: timedelta | None,
    max_running: int | None,
    rate_limit: int | None,
    rate_interval: timedelta | None,
) -> Call[JobTypePolicy]:
    s = validate_schema_name(schema)
    for name, value in (("max_attempts", max_attempts), ("max_running", max_running),
                        ("rate_limit", rate_limit)):
        _check_int(value, name)
    for name, delta in (("backoff_initial", backoff_initial), ("backoff_max", backoff_max),
                        ("lease", lease), ("rate_interval", rate_interval)):
        _check_delta(delta, name)
    params = {
        "type_name": type_name,
        "max_attempts": max_attempts,
        "backoff_initial": backoff_initial,
        "backoff_multiplier": backoff_multiplier,
        "backoff_max": backoff_max,
        "lease": lease,
        "max_running": max_running,
        "rate_limit": rate_limit,
        "rate_interval": rate_interval,
    }
    limited = max_running is not None or rate_limit is not None or rate_interval is not None
    return Call(
        Query(sql.set_job_type(s), params),
        lambda rows: JobTypePolicy.from_row(rows[0]),
        partial(_postgres_only, "set_job_type with limits") if limited else partial(_lite_set_job_type, s, params),
    )


def _lite_set_job_type(schema: str, params: dict[str, Any], conn: sqlite3.Connection) -> JobTypePolicy:
    """SQLite's set_job_type (retries and lease; it has no limits)."""
    row = lite_admin.set_job_type(
        conn, params["type_name"], params["max_attempts"], params["backoff_initial"],
        params["backoff_multiplier"], params["backoff_max"], params["lease"], schema=schema,
    )
    return JobTypePolicy.from_row({**row, "max_running": None, "rate_limit": None, "rate_interval": None})


def set_schedule(
    schema: str,
    name: str,
    cron: str,
    job_type: JobType[Any, Any] | str,
    input: Any,
    *,
    timezone: str,
    priority: int,
) -> Call[Schedule]:
    s = validate_schema_name(schema)
    check_priority(priority)
    for what, value in (("name", name), ("cron", cron), ("timezone", timezone)):
        if not isinstance(value, str):
            raise InvalidArgumentError(f"{what} must be a string, got {value!r}")
    params = {
        "name": name,
        "cron": cron,
        "type_name": _type_name_of(job_type),
        "input": json_text(dump_payload(job_type, input)),
        "timezone": timezone,
        "priority": priority,
    }
    return Call(
        Query(sql.set_schedule(s), params),
        lambda rows: Schedule.from_row(rows[0]),
        partial(_postgres_only, "set_schedule"),
    )


def delete_schedule(schema: str, name: str) -> Call[bool]:
    s = validate_schema_name(schema)
    return Call(
        Query(sql.delete_schedule(s), {"name": name}),
        lambda rows: bool(rows[0]["deleted"]),
        partial(_postgres_only, "delete_schedule"),
    )


def list_schedules(schema: str) -> Call[list[Schedule]]:
    s = validate_schema_name(schema)
    return Call(
        Query(sql.list_schedules(s), {}),
        lambda rows: [Schedule.from_row(r) for r in rows],
        partial(_postgres_only, "list_schedules"),
    )


def prune(
    schema: str,
    older_than: timedelta,
    *,
    batch_size: int,
    failed_older_than: timedelta | None,
) -> Call[PruneResult]:
    s = validate_schema_name(schema)
    if not isinstance(older_than, timedelta):
        raise InvalidArgumentError(f"older_than must be a timedelta, got {older_than!r}")
    _check_delta(failed_older_than, "failed_older_than")
    _check_int(batch_size, "batch_size")
    params = {"older_than": older_than, "batch_size": batch_size, "failed_older_than": failed_older_than}
    return Call(
        Query(sql.prune(s), params),
        lambda rows: PruneResult(chains=rows[0]["chains"], jobs=rows[0]["jobs"]),
        partial(_postgres_only, "prune"),
    )
