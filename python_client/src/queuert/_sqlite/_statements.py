"""The SQLite engine's SQL: named statements read from ``sqlite/sql/*.sql``.

SQLite has no stored procedures, so each engine operation is a few
statements run by the Python layer. They live as SQL files, one per concern
like ``sql/`` for PostgreSQL; inside a file each statement starts with a
line ``-- name: <name>`` (the aiosql convention) and runs as one
``execute``. ``{{ schema }}`` is the table prefix, as in the PostgreSQL
files. Named parameters are ``:name``; times are epoch microseconds, id
lists JSON arrays read with ``json_each``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from ..migrate import MigrationError, validate_schema_name

__all__ = ["engine_dirs", "statements"]

_NAME_LINE = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)[ \t]*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{\{\s*schema\s*\}\}")


def engine_dirs() -> tuple[Path, Path]:
    """``(statements_dir, migrations_dir)`` of the SQLite engine.

    A wheel ships them as package data ``queuert/_sqlite/_engine``; an
    editable or source checkout reads the repository's ``sqlite/``.
    """
    here = Path(__file__).resolve().parent
    for base in (here / "_engine", here.parents[3] / "sqlite"):
        if (base / "migrations").is_dir() and (base / "sql").is_dir():
            return base / "sql", base / "migrations"
    raise MigrationError(
        f"cannot find the queuert SQLite engine files: looked in {here / '_engine'} "
        f"and {here.parents[3] / 'sqlite'}"
    )


def parse(text: str, source: str) -> dict[str, str]:
    """The named statements of one file, in order."""
    found: dict[str, str] = {}
    marks = list(_NAME_LINE.finditer(text))
    preamble = text[: marks[0].start()] if marks else text
    if any(line.strip() and not line.lstrip().startswith("--") for line in preamble.splitlines()):
        raise MigrationError(f"{source}: SQL before the first '-- name:' line")
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[mark.end() : end].strip()
        body = body.rstrip(";").rstrip()
        if not body or ";" in _strip_comments(body):
            raise MigrationError(
                f"{source}: statement {mark.group(1)!r} must be exactly one SQL statement"
            )
        found[mark.group(1)] = body
    return found


def _strip_comments(sql: str) -> str:
    out = re.sub(r"--[^\n]*", "", sql)
    return re.sub(r"'(?:[^']|'')*'", "''", out)


@lru_cache(maxsize=1)
def _raw() -> dict[str, str]:
    sql_dir, _ = engine_dirs()
    found: dict[str, str] = {}
    for path in sorted(sql_dir.glob("*.sql")):
        for name, body in parse(path.read_text(encoding="utf-8"), path.name).items():
            if name in found:
                raise MigrationError(f"{path.name}: statement {name!r} is defined twice")
            found[name] = body
    return found


@lru_cache(maxsize=32)
def statements(schema: str) -> dict[str, str]:
    """Every statement, rendered for the tables prefixed ``<schema>_``."""
    validate_schema_name(schema)
    return {name: _PLACEHOLDER.sub(schema, body) for name, body in _raw().items()}
