"""What ``queuert migrate|status|chain`` do when ``--dsn`` is an SQLite URL
(``sqlite:///relative/path`` or ``sqlite:////absolute/path``): the same
output as for PostgreSQL, from the SQLite engine (:mod:`queuert._sqlite`).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from . import _sqlite as qs
from ._sqlite._connection import database_path
from .errors import QueuertError
from .migrate import MigrationError

__all__ = ["chain_rows", "is_sqlite", "migrate", "status_rows"]

T = TypeVar("T")


def is_sqlite(dsn: str | None) -> bool:
    return bool(dsn) and str(dsn).startswith("sqlite:")


def migrate(dsn: str, schema: str, grant_to: str | None) -> list[str]:
    if grant_to is not None:
        raise click.UsageError("--grant-to is for PostgreSQL: SQLite has no roles")
    try:
        return qs.migrate(dsn, schema=schema)
    except (MigrationError, QueuertError) as exc:
        raise click.ClickException(str(exc)) from exc
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot open the SQLite database {database_path(dsn)}: {exc}") from exc


@contextmanager
def _reading(dsn: str, schema: str) -> Iterator[sqlite3.Connection]:
    try:
        path = database_path(dsn)
    except QueuertError as exc:
        raise click.BadParameter(str(exc), param_hint="--dsn") from exc
    if path != ":memory:" and not os.path.exists(path):
        raise click.ClickException(f"no SQLite database at {path}: run `queuert migrate --dsn {dsn}`")
    conn = qs.connect(path)
    try:
        yield conn
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        raise click.ClickException(
            f"queuert is not installed in {path} (tables {schema}_...): "
            f"run `queuert migrate --dsn {dsn} --schema {schema}`"
        ) from exc
    finally:
        conn.close()


def _read(dsn: str, schema: str, fn: Callable[[sqlite3.Connection], T]) -> T:
    with _reading(dsn, schema) as conn:
        return fn(conn)


def status_rows(dsn: str, schema: str) -> list[tuple[Any, ...]]:
    """``(type_name, status, count, oldest_due_age)`` by type and status."""
    found = _read(dsn, schema, lambda conn: qs.stats(conn, schema=schema))
    return [(r["type_name"], r["status"], r["count"], r["oldest_due_age"]) for r in found]


def chain_rows(dsn: str, schema: str, chain_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """``(chain_index, id, type_name, status, attempt, last_attempt_error,
    blockers)`` per job of the chain, blockers comma-separated or None."""

    def read(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
        with qs.reading(conn, "read a chain"):
            jobs = qs.chain_jobs(conn, chain_id, schema=schema)
            blockers = qs.chain_blockers(conn, chain_id, schema=schema)
        return [
            (
                j["chain_index"], j["id"], j["type_name"], j["status"], j["attempt"], j["last_attempt_error"],
                ",".join(str(b) for b in blockers[j["id"]]) if j["id"] in blockers else None,
            )
            for j in jobs
        ]

    return _read(dsn, schema, read)
