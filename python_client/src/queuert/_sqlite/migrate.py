"""Migration runner for the SQLite engine: install or upgrade queuert's
tables in an application's database file.

``migrate(path_or_conn, schema="queuert")`` works like
:func:`queuert.migrate.migrate` and raises its exceptions:

1. checks the SQLite library (3.35 or later, with the JSON functions);
2. switches the file to WAL (readers never block the writer, and several
   processes can share the file);
3. ``BEGIN IMMEDIATE``: two migrators serialise on the write lock, and the
   second one applies nothing;
4. on a first install, refuses with :class:`SchemaCollisionError` if any
   name the migrations would create exists already, before changing
   anything;
5. applies every ``sqlite/migrations/NNNN_*.sql`` not applied yet, in order,
   recorded with its checksum in ``<schema>_schema_migration``; a landed
   migration whose checksum changed is :class:`ChecksumMismatchError`;
6. commits. Any failure rolls everything back.

Foreign key enforcement is off while it runs, on a connection you pass
too (restored after): 0003 rebuilds the job table, and dropping the old
one must not cascade to the blocker edges.

Nothing is re-applied on every run: SQLite has no stored functions, so the
engine's statements (``sqlite/sql/``) are read by the Python layer, not
installed. The tables are ``<schema>_job``, ``<schema>_job_blocker``,
``<schema>_job_type`` and the views ``<schema>_chain``, ``<schema>_stats``.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

from ..migrate import (
    ChecksumMismatchError,
    Migration,
    MigrationError,
    SchemaCollisionError,
    load_migrations,
    render,
    validate_schema_name,
)
from ._connection import DEFAULT_TIMEOUT, retry_locked, database_path
from ._errors import DatabaseBusyError, is_locked
from ._statements import engine_dirs

__all__ = ["MIN_SQLITE_VERSION", "created_names", "migrate", "split_statements"]

MIN_SQLITE_VERSION = (3, 35, 0)
TRACKING_TABLE = "schema_migration"

_CREATE_RE = re.compile(
    r"\bCREATE\s+(?:UNIQUE\s+)?(?:TEMP\s+|TEMPORARY\s+)?(?:TABLE|INDEX|VIEW|TRIGGER)\s+"
    r"(?:IF\s+NOT\s+EXISTS\s+)?\{\{\s*schema\s*\}\}_([A-Za-z0-9_]+)",
    re.IGNORECASE,
)


def split_statements(script: str) -> list[str]:
    """The statements of a script, each complete (triggers with their
    BEGIN ... END), as sqlite3.complete_statement sees them."""
    found: list[str] = []
    start = 0
    for pos, char in enumerate(script):
        if char == ";" and sqlite3.complete_statement(script[start : pos + 1]):
            statement = script[start : pos + 1].strip()
            if statement.strip(";").strip():
                found.append(statement)
            start = pos + 1
    rest = script[start:]
    if any(line.strip() and not line.strip().startswith("--") for line in rest.splitlines()):
        raise MigrationError(f"incomplete SQL statement at the end of a script: {rest.strip()[:80]!r}")
    return found


def created_names(texts: list[str], schema: str) -> set[str]:
    """Names of the tables, indexes, views and triggers the migrations create."""
    names: set[str] = set()
    for text in texts:
        body = re.sub(r"--[^\n]*", " ", text)
        names.update(f"{schema}_{name}".lower() for name in _CREATE_RE.findall(body))
    return names


def _check_library(conn: sqlite3.Connection) -> None:
    version = tuple(int(p) for p in sqlite3.sqlite_version.split(".")[:3])
    if version < MIN_SQLITE_VERSION:
        raise MigrationError(
            f"queuert needs SQLite {'.'.join(map(str, MIN_SQLITE_VERSION))} or later "
            f"(RETURNING, UPDATE ... FROM), this Python has {sqlite3.sqlite_version}"
        )
    try:
        conn.execute("SELECT count(*) FROM json_each('[1]')").fetchall()
    except sqlite3.OperationalError as e:
        raise MigrationError(f"queuert needs SQLite's JSON functions (json_each): {e}") from e


def _use_wal(conn: sqlite3.Connection) -> None:
    try:
        retry_locked(conn, "PRAGMA journal_mode = WAL", "switch the database to WAL")
    except DatabaseBusyError as e:
        raise MigrationError(f"cannot switch the database to WAL: {e}") from e


def migrate(
    target: str | os.PathLike[str] | sqlite3.Connection,
    schema: str = "queuert",
    *,
    migrations_dir: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[str]:
    """Apply pending SQLite migrations for tables prefixed ``<schema>_``.

    ``target`` is a path, a ``sqlite:///path`` URL or an open connection
    that is not in a transaction. Returns the names of the migrations
    applied by this call (``[]`` when up to date). Raises
    :class:`~queuert.migrate.MigrationError` (or a subclass) and changes
    nothing on any failure.
    """
    validate_schema_name(schema)
    migrations = load_migrations(migrations_dir or engine_dirs()[1])
    own = not isinstance(target, sqlite3.Connection)
    if isinstance(target, sqlite3.Connection):
        conn = target
    else:
        conn = sqlite3.connect(database_path(target), timeout=timeout, isolation_level=None)
    try:
        if conn.in_transaction:
            raise MigrationError(
                "migrate runs its own transaction, but this connection is in one: "
                "commit or roll back first, or pass the database path"
            )
        _check_library(conn)
        _use_wal(conn)
        # A migration that rebuilds a table (0003) drops the old one; with
        # foreign keys enforced that drop would first delete its rows and
        # cascade to job_blocker. The pragma is a no-op inside a
        # transaction, so it is set before BEGIN and restored after.
        enforcing = conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
        if enforcing:
            conn.execute("PRAGMA foreign_keys = OFF")
        try:
            try:
                retry_locked(conn, "BEGIN IMMEDIATE", "migrate")
            except DatabaseBusyError as e:
                raise MigrationError(str(e)) from e
            try:
                applied = _apply(conn, schema, migrations)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            if enforcing:
                conn.execute("PRAGMA foreign_keys = ON")
        return applied
    except sqlite3.Error as e:
        if is_locked(e):
            raise MigrationError(f"the database is locked: {e}") from e
        raise MigrationError(f"SQLite refused the migration: {e}") from e
    finally:
        if own:
            conn.close()


def _apply(conn: sqlite3.Connection, schema: str, migrations: list[Migration]) -> list[str]:
    tracking = f"{schema}_{TRACKING_TABLE}"
    existing = {
        str(name).lower(): str(kind)
        for kind, name in conn.execute("SELECT type, name FROM sqlite_master").fetchall()
    }
    if tracking in existing:
        columns = {r[1] for r in conn.execute(f'PRAGMA table_info("{tracking}")').fetchall()}
        if not {"version", "name", "checksum", "applied_at"} <= columns:
            raise SchemaCollisionError(schema, [f"table {tracking}"])
    else:
        wanted = created_names([m.text for m in migrations], schema) | {tracking}
        clashes = sorted(f"{existing[n]} {n}" for n in wanted if n in existing)
        if clashes:
            raise SchemaCollisionError(schema, clashes)
    conn.execute(
        f'CREATE TABLE IF NOT EXISTS "{tracking}" ('
        " version INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL,"
        " checksum TEXT NOT NULL,"
        " applied_at INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)))"
    )
    landed = {
        int(v): (str(n), str(c))
        for v, n, c in conn.execute(f'SELECT version, name, checksum FROM "{tracking}"').fetchall()
    }
    known = {m.version for m in migrations}
    unknown = sorted(landed[v][0] for v in landed if v not in known)
    if unknown:
        raise MigrationError(
            f"database has queuert SQLite migration(s) {', '.join(unknown)} that this "
            "queuert package does not know: upgrade queuert before migrating (nothing was changed)"
        )
    changed = [m.name for m in migrations if m.version in landed and landed[m.version][1] != m.checksum]
    if changed:
        raise ChecksumMismatchError(schema, changed)
    applied = []
    for m in migrations:
        if m.version in landed:
            continue
        for statement in split_statements(render(m.text, schema)):
            try:
                conn.execute(statement)
            except sqlite3.Error as e:
                raise MigrationError(f"{m.path.name}: {e}") from e
        conn.execute(
            f'INSERT INTO "{tracking}" (version, name, checksum) VALUES (?, ?, ?)',
            (m.version, m.name, m.checksum),
        )
        applied.append(m.name)
    return applied
