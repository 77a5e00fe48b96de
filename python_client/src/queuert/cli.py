"""The ``queuert`` command line."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import click
import psycopg
from psycopg import sql

from queuert.migrate import MigrationError, validate_schema_name

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

_F = TypeVar("_F", bound=Callable[..., Any])


def default_dsn() -> str:
    """DATABASE_URL, then QUEUERT_DSN, then the local server."""
    return os.environ.get("DATABASE_URL") or os.environ.get("QUEUERT_DSN") or DEFAULT_DSN


def _schema_option(f: _F) -> _F:
    return click.option(
        "--schema",
        default="queuert",
        show_default=True,
        envvar="QUEUERT_SCHEMA",
        help="Schema that holds queuert (env QUEUERT_SCHEMA).",
    )(f)


def _dsn_option(f: _F) -> _F:
    return click.option(
        "--dsn",
        default=None,
        metavar="DSN",
        help="PostgreSQL connection string (default: $DATABASE_URL, then $QUEUERT_DSN, "
        f"then {DEFAULT_DSN}).",
    )(f)


def _check_schema(schema: str) -> str:
    try:
        return validate_schema_name(schema)
    except MigrationError as exc:
        raise click.BadParameter(str(exc), param_hint="--schema") from exc


def _connect(dsn: str | None) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(dsn or default_dsn(), autocommit=True)
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot connect to PostgreSQL: {exc}") from exc


def format_age(age: timedelta | None) -> str:
    if age is None:
        return "-"
    seconds = int(age.total_seconds())
    prefix = ""
    if seconds < 0:
        prefix, seconds = "in ", -seconds
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        text = f"{days}d {hours:02d}h"
    elif hours:
        text = f"{hours}h {minutes:02d}m"
    elif minutes:
        text = f"{minutes}m {secs:02d}s"
    else:
        text = f"{secs}s"
    return prefix + text


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


@click.group(
    help=(
        "queuert: durable job chains inside your own PostgreSQL.\n\n"
        "Jobs are rows created in your own transactions; the engine is PL/pgSQL. "
        "Run `queuert migrate` once to install it, `queuert worker` to process jobs, "
        "`queuert status` and `queuert chain ID` to look inside."
    )
)
@click.version_option(package_name="queuert", prog_name="queuert")
def cli() -> None:
    pass


@cli.command(
    short_help="Install or upgrade the engine in a schema.",
    help="Install or upgrade the engine (tables, functions, views) in a schema. "
    "Safe to run again: applies only what is missing, in one transaction.",
)
@_dsn_option
@_schema_option
@click.option(
    "--grant-to",
    default=None,
    metavar="ROLE",
    help="Also grant ROLE usage of the schema, EXECUTE on the engine functions and "
    "SELECT on its tables and views (no direct writes).",
)
def migrate(dsn: str | None, schema: str, grant_to: str | None) -> None:
    from queuert.migrate import migrate as run_migrate

    _check_schema(schema)
    try:
        applied = run_migrate(dsn or default_dsn(), schema=schema, grant_to=grant_to)
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from exc
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot connect to PostgreSQL: {exc}") from exc
    if applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("no new migrations")
    click.echo(f"engine SQL up to date in schema {schema}")


@cli.command(
    short_help="Job counts per type and status.",
    help="Show job counts per type and status, with the age of the oldest due job.",
)
@_dsn_option
@_schema_option
def status(dsn: str | None, schema: str) -> None:
    _check_schema(schema)
    with _connect(dsn) as conn:
        try:
            rows = conn.execute(
                sql.SQL(
                    "SELECT type_name, status::text, count, oldest_due_age "
                    "FROM {}.stats ORDER BY type_name, status"
                ).format(sql.Identifier(schema))
            ).fetchall()
        except psycopg.errors.UndefinedTable as exc:
            raise click.ClickException(
                f"queuert is not installed in schema {schema!r}: run `queuert migrate`"
            ) from exc
    if not rows:
        click.echo(f"no jobs in schema {schema}")
        return
    click.echo(
        format_table(
            ["type", "status", "count", "oldest due"],
            [
                [str(t), str(s), str(c), format_age(a if isinstance(a, timedelta) else None)]
                for t, s, c, a in rows
            ],
        )
    )


@cli.command(help="Show the jobs of chain ID in order.")
@click.argument("chain_id", type=click.UUID)
@_dsn_option
@_schema_option
def chain(chain_id: uuid.UUID, dsn: str | None, schema: str) -> None:
    _check_schema(schema)
    s = sql.Identifier(schema)
    with _connect(dsn) as conn:
        try:
            rows = conn.execute(
                sql.SQL(
                    "SELECT j.chain_index, j.id, j.type_name, j.status::text, j.attempt,"
                    " j.last_attempt_error,"
                    " (SELECT string_agg(b.blocker_chain_id::text, ',' ORDER BY b.position)"
                    "    FROM {s}.job_blocker b WHERE b.job_id = j.id)"
                    " FROM {s}.chain_jobs(%s) j ORDER BY j.chain_index"
                ).format(s=s),
                (chain_id,),
            ).fetchall()
        except psycopg.errors.UndefinedTable as exc:
            raise click.ClickException(
                f"queuert is not installed in schema {schema!r}: run `queuert migrate`"
            ) from exc
        except psycopg.errors.UndefinedFunction as exc:
            raise click.ClickException(
                f"queuert is not installed in schema {schema!r}: run `queuert migrate`"
            ) from exc
    if not rows:
        raise click.ClickException(f"chain {chain_id} not found")
    click.echo(
        format_table(
            ["index", "job id", "type", "status", "attempt", "errors", "blockers"],
            [
                [
                    str(idx),
                    str(jid),
                    str(tname),
                    str(st),
                    str(att),
                    _one_line(err) if err is not None else "-",
                    str(blk) if blk else "-",
                ]
                for idx, jid, tname, st, att, err, blk in rows
            ],
        )
    )


def _one_line(value: object, limit: int = 80) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@cli.command(
    short_help="Run a worker for the handlers registered on MODULE:ATTR.",
    help=(
        "Run a worker for the handlers registered on MODULE:ATTR, until SIGTERM or "
        "SIGINT (in-flight jobs are finished or released, none is lost).\n\n"
        "MODULE:ATTR names a queuert Worker, a zero-argument factory returning one, "
        "or a mapping of job type to handler. Options given here override the "
        "worker's own settings; options left out keep them."
    ),
)
@click.argument("target", metavar="MODULE:ATTR")
@click.option(
    "--dsn",
    default=None,
    metavar="DSN",
    help="PostgreSQL connection string (default: the worker's own, else $DATABASE_URL, "
    f"then $QUEUERT_DSN, then {DEFAULT_DSN}).",
)
@click.option(
    "--schema",
    default=None,
    envvar="QUEUERT_SCHEMA",
    help="Schema that holds queuert (env QUEUERT_SCHEMA; default: the worker's own, "
    "else queuert).",
)
@click.option("--concurrency", default=None, type=click.IntRange(min=1),
              help="Jobs processed at the same time (default: the worker's own, else 10).")
@click.option("--types", default=None, metavar="A,B",
              help="Only process these job types (comma-separated; default: all registered).")
@click.option("--mode", type=click.Choice(["staged", "atomic"]), default=None,
              help="Processing mode (default: the worker's own, else staged).")
@click.option("--notify", default=None, envvar="QUEUERT_NOTIFY", metavar="URL",
              help="Wake-ups: postgres (LISTEN/NOTIFY), redis://HOST:PORT/DB, "
              "redis+cluster://NODE:PORT, nats://HOST:PORT, or none (poll only); "
              "?prefix=NAME sets the broker prefix (default: the schema name). "
              "Env QUEUERT_NOTIFY; default: the worker's own, else postgres. See docs/notify.md.")
def worker(
    target: str,
    dsn: str | None,
    schema: str | None,
    concurrency: int | None,
    types: str | None,
    mode: str | None,
    notify: str | None,
) -> None:
    if schema is not None:
        _check_schema(schema)
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise click.BadParameter("expected MODULE:ATTR", param_hint="MODULE:ATTR")
    from queuert.worker import build_worker, run_worker_cli  # lazy: the worker pulls in more modules

    type_list = [t.strip() for t in types.split(",") if t.strip()] if types else None
    try:
        if notify is None:
            run_worker_cli(
                target=target,
                dsn=dsn,
                schema=schema,
                concurrency=concurrency,
                types=type_list,
                mode=mode,  # type: ignore[arg-type]
            )
            return
        loaded = build_worker(
            target, dsn=dsn, schema=schema, concurrency=concurrency, types=type_list,
            mode=mode,  # type: ignore[arg-type]
        )
    except (ImportError, AttributeError) as exc:
        raise click.ClickException(f"cannot load worker {target}: {exc}") from exc
    _run_with_notifier(loaded, notify)


def _run_with_notifier(loaded: Any, notify: str) -> None:
    """``queuert worker --notify``: the loaded worker with the notifier the
    URL names, run like run_worker_cli runs it."""
    import logging

    from queuert.notify import notifier_from_url

    try:
        loaded.notifier = notifier_from_url(notify, conninfo=loaded.conninfo, schema=loaded.schema)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--notify") from exc
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loaded.run(handle_signals=True)


def main() -> None:
    cli(prog_name="queuert")


if __name__ == "__main__":
    main()
