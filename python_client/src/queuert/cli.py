"""The ``queuert`` command line."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import click
import psycopg
from psycopg import sql

from queuert import _cli_embedded, _cli_schedules, _cli_sqlite
from queuert._cli_common import DEFAULT_DSN, check_schema, default_dsn, dsn_option, schema_option
from queuert.migrate import MigrationError

__all__ = ["DEFAULT_DSN", "cli", "default_dsn", "format_age", "format_table", "main"]


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
@dsn_option
@schema_option
@click.option(
    "--grant-to",
    default=None,
    metavar="ROLE",
    help="Also grant ROLE usage of the schema, EXECUTE on the engine functions and "
    "SELECT on its tables and views (no direct writes).",
)
def migrate(dsn: str | None, schema: str, grant_to: str | None) -> None:
    from queuert.migrate import migrate as run_migrate

    check_schema(schema)
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
@dsn_option
@schema_option
def status(dsn: str | None, schema: str) -> None:
    check_schema(schema)
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
@dsn_option
@schema_option
def chain(chain_id: uuid.UUID, dsn: str | None, schema: str) -> None:
    check_schema(schema)
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
        check_schema(schema)
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
@dsn_option
@schema_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
@click.option("--read-only", is_flag=True, help="Hide and refuse every action.")
@click.option("--base-path", default=None, metavar="PATH",
              help="URL prefix of every link, behind a proxy that strips it (e.g. /queuert).")
@click.option("--notify", default=None, envvar="QUEUERT_NOTIFY", metavar="URL",
              help="Publish what an action makes ready through this notifier (redis://..., "
              "nats://..., as for queuert worker). Env QUEUERT_NOTIFY; default: the "
              "engine's NOTIFY only. See docs/notify.md.")
def dashboard(
    dsn: str | None, schema: str, host: str, port: int, read_only: bool, base_path: str | None,
    notify: str | None,
) -> None:
    check_schema(schema)
    try:
        import uvicorn

        from queuert.dashboard import create_dashboard
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs its extra: pip install 'queuert[dashboard]' ({exc})"
        ) from exc
    conninfo = dsn or default_dsn()
    notifier = None
    if notify is not None:
        from queuert.notify import notifier_from_url

        try:
            notifier = notifier_from_url(notify, conninfo=conninfo, schema=schema)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--notify") from exc
    try:
        app = create_dashboard(
            conninfo, schema=schema, read_only=read_only, base_path=base_path, notifier=notifier
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--base-path") from exc
    click.echo(f"queuert dashboard on http://{host}:{port}{base_path or ''}/ (Ctrl-C stops it)")
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")


_cli_embedded.add_commands(cli)
_cli_schedules.add_commands(cli, _cli_schedules.CliHelpers(
    dsn_option=dsn_option,
    schema_option=schema_option,
    check_schema=check_schema,
    connect=_connect,
    is_sqlite=lambda dsn: _cli_sqlite.is_sqlite(dsn or default_dsn()),
    format_table=format_table,
))


def main() -> None:
    cli(prog_name="queuert")


if __name__ == "__main__":
    main()
