"""What the ``queuert`` commands share: the default DSN and the --dsn and
--schema options."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from queuert.migrate import MigrationError, validate_schema_name

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

_F = TypeVar("_F", bound=Callable[..., Any])


def default_dsn() -> str:
    """DATABASE_URL, then QUEUERT_DSN, then the local server."""
    return os.environ.get("DATABASE_URL") or os.environ.get("QUEUERT_DSN") or DEFAULT_DSN


def schema_option(f: _F) -> _F:
    return click.option(
        "--schema",
        default="queuert",
        show_default=True,
        envvar="QUEUERT_SCHEMA",
        help="Schema that holds queuert (env QUEUERT_SCHEMA).",
    )(f)


def dsn_option(f: _F) -> _F:
    return click.option(
        "--dsn",
        default=None,
        metavar="DSN",
        help="PostgreSQL connection string, or sqlite:///PATH for an SQLite file "
        f"(default: $DATABASE_URL, then $QUEUERT_DSN, then {DEFAULT_DSN}).",
    )(f)


def check_schema(schema: str) -> str:
    try:
        return validate_schema_name(schema)
    except MigrationError as exc:
        raise click.BadParameter(str(exc), param_hint="--schema") from exc
