"""Migration runner: install or upgrade the queuert engine in a database.

``migrate(conninfo, schema="queuert")`` does everything in ONE transaction:

1. takes a transaction-scoped advisory lock for the schema, so two migrators
   racing serialise and the second one applies nothing;
2. on a first install into a schema that already exists (``public``, say),
   refuses with :class:`SchemaCollisionError` if any object the engine would
   create already exists there, before anything is changed;
3. creates the schema and the tracking table ``<schema>.schema_migration``;
4. applies every ``migrations/NNNN_*.sql`` not applied yet, in order; a landed
   migration whose checksum changed is :class:`ChecksumMismatchError` and is
   never re-run;
5. re-applies every ``sql/*.sql`` in sorted order (they are written with
   CREATE OR REPLACE, so functions change without new migrations);
6. revokes EXECUTE on the engine's routines from PUBLIC and, with
   ``grant_to``, grants that role USAGE on the schema, EXECUTE on the
   engine's routines and SELECT on its tables and views, nothing more;
7. commits.

The SQL files contain the literal placeholder ``{{ schema }}`` wherever the
schema name goes; it is replaced with the chosen schema, which must match
``[a-z_][a-z0-9_]{0,39}`` (so channel names such as ``<schema>_job_ready``
fit in 63 bytes and never need quoting).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from ._schema_name import SCHEMA_NAME_RE, validate_schema_name
from .errors import InvalidSchemaNameError, MigrationError

__all__ = [
    "ChecksumMismatchError",
    "InvalidSchemaNameError",
    "Migration",
    "MigrationError",
    "SCHEMA_NAME_RE",
    "SchemaCollisionError",
    "created_objects",
    "load_engine_files",
    "load_migrations",
    "migrate",
    "render",
    "resource_dirs",
    "validate_schema_name",
]

PLACEHOLDER_RE = re.compile(r"\{\{\s*schema\s*\}\}")
MIGRATION_FILE_RE = re.compile(r"(\d{4})_([A-Za-z0-9_]+)\.sql")
TRACKING_TABLE = "schema_migration"

# Two-key advisory lock: the first key is fixed for queuert, the second is
# derived from the schema name (see _lock).
_LOCK_CLASS = 0x71756575  # "queu"


# MigrationError and InvalidSchemaNameError live in queuert.errors (the
# client refuses a bad schema name with the same exception); both are
# exported from here too.


class SchemaCollisionError(MigrationError):
    """First install into a schema that already holds objects with the engine's names."""

    def __init__(self, schema: str, names: list[str]) -> None:
        self.schema = schema
        self.names = names
        super().__init__(
            f"refusing to install queuert into schema {schema!r}: it already contains "
            f"{', '.join(names)}; choose another schema with --schema (nothing was changed)"
        )


class ChecksumMismatchError(MigrationError):
    """A migration that already landed was edited afterwards."""

    def __init__(self, schema: str, names: list[str]) -> None:
        self.schema = schema
        self.names = names
        super().__init__(
            f"migration(s) {', '.join(names)} already applied to schema {schema!r} "
            "have changed since (checksum mismatch); landed migrations are immutable: "
            "restore the original file(s) and put the change in a new migration "
            "(nothing was changed)"
        )


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # file stem, e.g. "0001_init"
    path: Path
    text: str
    checksum: str


def resource_dirs() -> tuple[Path, Path]:
    """Return ``(sql_dir, migrations_dir)``.

    An installed wheel ships them as package data ``queuert/_sql`` and
    ``queuert/_migrations``; an editable or source checkout uses the
    repository's top-level ``sql/`` and ``migrations/``.
    """
    here = Path(__file__).resolve().parent
    packaged = (here / "_sql", here / "_migrations")
    if packaged[1].is_dir():
        return packaged
    # python_client/src/queuert/migrate.py -> repository root is parents[2]
    repo = here.parents[2]
    source = (repo / "sql", repo / "migrations")
    if source[1].is_dir():
        return source
    raise MigrationError(
        f"cannot find the queuert SQL files: looked in {packaged[1]} and {source[1]}"
    )


def _read(path: Path) -> str:
    # Normalise line endings so a CRLF checkout has the same checksum.
    return path.read_text(encoding="utf-8").replace("\r\n", "\n")


def load_migrations(directory: Path) -> list[Migration]:
    migrations: list[Migration] = []
    seen: dict[int, str] = {}
    for path in sorted(directory.glob("*.sql")):
        m = MIGRATION_FILE_RE.fullmatch(path.name)
        if m is None:
            raise MigrationError(
                f"{path}: migration files must be named NNNN_name.sql"
            )
        version = int(m.group(1))
        if version in seen:
            raise MigrationError(
                f"two migrations share version {version}: {seen[version]} and {path.stem}"
            )
        seen[version] = path.stem
        text = _read(path)
        migrations.append(
            Migration(
                version=version,
                name=path.stem,
                path=path,
                text=text,
                checksum=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            )
        )
    return migrations


def load_engine_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.sql")) if directory.is_dir() else []


def render(text: str, schema: str) -> str:
    return PLACEHOLDER_RE.sub(schema, text)


_S = r"\{\{\s*schema\s*\}\}\."
_CREATE_RE = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:(?:UNLOGGED|TEMP|TEMPORARY)\s+)?"
    r"(?:MATERIALIZED\s+)?(TABLE|VIEW|FUNCTION|PROCEDURE|AGGREGATE|TYPE|DOMAIN|SEQUENCE)\s+"
    r"(?:IF\s+NOT\s+EXISTS\s+)?" + _S + r'"?([A-Za-z_][A-Za-z0-9_$]*)',
    re.IGNORECASE,
)
_INDEX_RE = re.compile(
    r"\bCREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
    r'"?([A-Za-z_][A-Za-z0-9_$]*)"?\s+ON\s+(?:ONLY\s+)?' + _S,
    re.IGNORECASE,
)
_KIND = {
    "TABLE": "relation",
    "VIEW": "relation",
    "SEQUENCE": "relation",
    "INDEX": "relation",
    "TYPE": "type",
    "DOMAIN": "type",
    "FUNCTION": "routine",
    "PROCEDURE": "routine",
    "AGGREGATE": "routine",
}


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)
    return re.sub(r"--[^\n]*", " ", text)


def created_objects(texts: list[str]) -> dict[str, set[str]]:
    """Names the SQL creates in ``{{ schema }}``, by kind.

    Kinds: ``relation`` (tables, views, sequences, indexes: pg_class),
    ``type`` (pg_type) and ``routine`` (pg_proc).
    """
    found: dict[str, set[str]] = {"relation": set(), "type": set(), "routine": set()}
    for text in texts:
        body = _strip_comments(text)
        for kind, name in _CREATE_RE.findall(body):
            found[_KIND[kind.upper()]].add(name.lower())
        for name in _INDEX_RE.findall(body):
            found["relation"].add(name.lower())
    return found


def _lock(cur: psycopg.Cursor[tuple[object, ...]], schema: str) -> None:
    cur.execute(
        "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
        (_LOCK_CLASS, "queuert.migrate:" + schema),
    )


def _collisions(
    cur: psycopg.Cursor[tuple[object, ...]], schema: str, objects: dict[str, set[str]]
) -> list[str]:
    relations = sorted(objects["relation"] | {TRACKING_TABLE})
    types = sorted(objects["type"] | objects["relation"])  # a table has a row type
    routines = sorted(objects["routine"])
    cur.execute(
        """
        SELECT 'relation ' || c.relname FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %(schema)s AND c.relname = ANY(%(relations)s)
        UNION
        SELECT 'type ' || t.typname FROM pg_type t
          JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = %(schema)s AND t.typname = ANY(%(types)s)
           AND t.typrelid = 0
        UNION
        SELECT 'function ' || p.proname FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = %(schema)s AND p.proname = ANY(%(routines)s)
        ORDER BY 1
        """,
        {"schema": schema, "relations": relations, "types": types, "routines": routines},
    )
    return [str(r[0]) for r in cur.fetchall()]


def _exec_file(cur: psycopg.Cursor[tuple[object, ...]], path: Path, text: str, schema: str) -> None:
    try:
        # bytes and no parameters: sent as-is, several statements allowed,
        # '%' characters untouched.
        cur.execute(render(text, schema).encode("utf-8"))
    except psycopg.Error as exc:
        raise MigrationError(f"{path.name}: {exc}") from exc


def migrate(
    conninfo: str,
    schema: str = "queuert",
    grant_to: str | None = None,
    *,
    sql_dir: Path | None = None,
    migrations_dir: Path | None = None,
) -> list[str]:
    """Apply pending migrations and re-apply the engine SQL into ``schema``.

    Returns the names of the migrations applied by this call (``[]`` when the
    schema was already up to date). Raises :class:`MigrationError` (or a
    subclass) and changes nothing on any failure.
    """
    validate_schema_name(schema)
    if grant_to is not None and not grant_to:
        raise MigrationError("grant_to must be a role name")
    if sql_dir is None or migrations_dir is None:
        default_sql, default_migrations = resource_dirs()
        sql_dir = sql_dir or default_sql
        migrations_dir = migrations_dir or default_migrations
    migrations = load_migrations(migrations_dir)
    engine_files = [(p, _read(p)) for p in load_engine_files(sql_dir)]
    objects = created_objects([m.text for m in migrations] + [t for _, t in engine_files])

    schema_id = sql.Identifier(schema)
    applied: list[str] = []
    with psycopg.connect(conninfo, autocommit=False) as conn:
        with conn.transaction(), conn.cursor() as cur:
            _lock(cur, schema)
            cur.execute(
                "SELECT to_regnamespace(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
                (schema, f"{schema}.{TRACKING_TABLE}"),
            )
            row = cur.fetchone()
            assert row is not None
            schema_exists, tracking_exists = bool(row[0]), bool(row[1])

            if tracking_exists:
                cur.execute(
                    "SELECT array_agg(attname::text ORDER BY attname) FROM pg_attribute "
                    "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                    (f"{schema}.{TRACKING_TABLE}",),
                )
                cols_row = cur.fetchone()
                cols = set(cols_row[0] or []) if cols_row else set()
                if not {"version", "name", "checksum", "applied_at"} <= cols:
                    raise SchemaCollisionError(schema, [f"relation {TRACKING_TABLE}"])
            elif schema_exists:
                clashes = _collisions(cur, schema, objects)
                if clashes:
                    raise SchemaCollisionError(schema, clashes)

            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema_id))
            cur.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.{} ("
                    " version integer PRIMARY KEY,"
                    " name text NOT NULL,"
                    " checksum text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(schema_id, sql.Identifier(TRACKING_TABLE))
            )
            cur.execute(
                sql.SQL("SELECT version, name, checksum FROM {}.{} ORDER BY version").format(
                    schema_id, sql.Identifier(TRACKING_TABLE)
                )
            )
            landed = {int(v): (str(n), str(c)) for v, n, c in cur.fetchall()}

            known = {m.version for m in migrations}
            unknown = sorted(landed[v][0] for v in landed if v not in known)
            if unknown:
                raise MigrationError(
                    f"schema {schema!r} has migration(s) {', '.join(unknown)} that this "
                    "queuert package does not know: upgrade queuert before migrating "
                    "(nothing was changed)"
                )
            changed = [m.name for m in migrations if m.version in landed and landed[m.version][1] != m.checksum]
            if changed:
                raise ChecksumMismatchError(schema, changed)

            for m in migrations:
                if m.version in landed:
                    continue
                _exec_file(cur, m.path, m.text, schema)
                cur.execute(
                    sql.SQL("INSERT INTO {}.{} (version, name, checksum) VALUES (%s, %s, %s)").format(
                        schema_id, sql.Identifier(TRACKING_TABLE)
                    ),
                    (m.version, m.name, m.checksum),
                )
                applied.append(m.name)

            for path, text in engine_files:
                _exec_file(cur, path, text, schema)

            _apply_privileges(cur, schema, objects, grant_to)
    return applied


def _apply_privileges(
    cur: psycopg.Cursor[tuple[object, ...]],
    schema: str,
    objects: dict[str, set[str]],
    grant_to: str | None,
) -> None:
    cur.execute(
        """
        SELECT p.prokind::text, p.proname::text, pg_get_function_identity_arguments(p.oid)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = %s AND p.proname = ANY(%s)
         ORDER BY 2, 3
        """,
        (schema, sorted(objects["routine"])),
    )
    rows = cur.fetchall()
    names = [str(name) for _kind, name, _args in rows]
    routines = [
        sql.SQL("{}.{}({})").format(sql.Identifier(schema), sql.Identifier(name), sql.SQL(args))  # type: ignore[arg-type]
        for _kind, name, args in rows
    ]
    # Engine routines are not for everyone: only the owner and granted roles.
    for routine in routines:
        cur.execute(sql.SQL("REVOKE EXECUTE ON ROUTINE {} FROM PUBLIC").format(routine))
    if grant_to is None:
        return
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (grant_to,))
    if cur.fetchone() is None:
        raise MigrationError(f"grant_to: role {grant_to!r} does not exist (nothing was changed)")
    role = sql.Identifier(grant_to)
    cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), role))
    # Only the public API: `_`-prefixed internals are called by the engine's
    # SECURITY DEFINER functions as the owner, never by the application (an
    # earlier grant of them is taken back).
    for name, routine in zip(names, routines):
        verb = "REVOKE EXECUTE ON ROUTINE {} FROM {}" if name.startswith("_") else (
            "GRANT EXECUTE ON ROUTINE {} TO {}"
        )
        cur.execute(sql.SQL(verb).format(routine, role))
    cur.execute(
        """
        SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p', 'v', 'm')
         ORDER BY 1
        """,
        (schema, sorted(objects["relation"] | {TRACKING_TABLE})),
    )
    for (relname,) in cur.fetchall():
        cur.execute(
            sql.SQL("GRANT SELECT ON {}.{} TO {}").format(
                sql.Identifier(schema), sql.Identifier(str(relname)), role
            )
        )
