"""``queuert schedules`` (list, set, delete) and ``queuert prune``.

Registered on the main group by :mod:`queuert.cli`, which hands over its
shared options and helpers (so this module never imports it back)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import click
import psycopg

from queuert import client
from queuert.errors import QueuertError

__all__ = ["CliHelpers", "add_commands"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class CliHelpers:
    """What the commands borrow from :mod:`queuert.cli`."""

    dsn_option: Callable[[Any], Any]
    schema_option: Callable[[Any], Any]
    check_schema: Callable[[str], str]
    connect: Callable[[str | None], psycopg.Connection[Any]]
    is_sqlite: Callable[[str | None], bool]
    format_table: Callable[[Sequence[str], Sequence[Sequence[str]]], str]


def parse_age(text: str) -> timedelta:
    """'30d', '12h', '90m', '45s', '2w' (or a number of seconds)."""
    text = text.strip().lower()
    try:
        if text and text[-1] in _UNITS:
            return timedelta(seconds=float(text[:-1]) * _UNITS[text[-1]])
        return timedelta(seconds=float(text))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an age like 30d, 12h, 90m or 45s") from None


def _refuse_sqlite(h: CliHelpers, dsn: str | None) -> None:
    if h.is_sqlite(dsn):
        raise click.ClickException("schedules and prune need PostgreSQL (the SQLite engine has neither)")


def add_commands(cli: click.Group, h: CliHelpers) -> None:
    @cli.group(help="List, set and delete schedules (recurring chains, docs/recurring.md).")
    def schedules() -> None:
        pass

    @schedules.command("list", help="Every schedule with its next and last tick.")
    @h.dsn_option
    @h.schema_option
    def list_(dsn: str | None, schema: str) -> None:
        h.check_schema(schema)
        _refuse_sqlite(h, dsn)
        with h.connect(dsn) as conn:
            rows = _run(lambda: client.list_schedules(conn, schema=schema))
        if not rows:
            click.echo(f"no schedules in schema {schema}")
            return
        click.echo(h.format_table(
            ["name", "cron", "timezone", "type", "next tick", "last tick"],
            [[r.name, r.cron, r.timezone, r.type_name, r.next_tick_at.isoformat(),
              r.last_tick_at.isoformat() if r.last_tick_at else "-"] for r in rows],
        ))

    @schedules.command("set", help="Create or replace schedule NAME: a chain of TYPE at every tick "
                       "of CRON (five fields, or @hourly, @daily ...), in --timezone.")
    @click.argument("name")
    @click.argument("cron")
    @click.argument("type_name", metavar="TYPE")
    @click.option("--input", "input_", default=None, metavar="JSON", help="The chains' input (JSON).")
    @click.option("--timezone", default="UTC", show_default=True, help="IANA time zone of the cron.")
    @click.option("--priority", type=int, default=0, show_default=True)
    @h.dsn_option
    @h.schema_option
    def set_(name: str, cron: str, type_name: str, input_: str | None, timezone: str, priority: int,
             dsn: str | None, schema: str) -> None:
        h.check_schema(schema)
        _refuse_sqlite(h, dsn)
        try:
            payload = None if input_ is None else json.loads(input_)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--input") from exc
        with h.connect(dsn) as conn:
            row = _run(lambda: client.set_schedule(
                conn, name, cron, type_name, payload, timezone=timezone, priority=priority, schema=schema))
        click.echo(f"schedule {row.name}: next tick {row.next_tick_at.isoformat()}")

    @schedules.command("delete", help="Delete schedule NAME (chains it started stay).")
    @click.argument("name")
    @h.dsn_option
    @h.schema_option
    def delete(name: str, dsn: str | None, schema: str) -> None:
        h.check_schema(schema)
        _refuse_sqlite(h, dsn)
        with h.connect(dsn) as conn:
            deleted = _run(lambda: client.delete_schedule(conn, name, schema=schema))
        if not deleted:
            raise click.ClickException(f"no schedule named {name!r}")
        click.echo(f"deleted schedule {name}")

    @cli.command(help="Delete completed and cancelled chains older than --older-than (failed ones "
                 "too with --failed-older-than) that no other chain waits on, in batches of "
                 "--batch-size, each its own transaction.")
    @click.option("--older-than", required=True, metavar="AGE", help="e.g. 30d, 12h, 90m.")
    @click.option("--failed-older-than", default=None, metavar="AGE",
                  help="Also failed chains whose last attempt is older than this.")
    @click.option("--batch-size", type=click.IntRange(1, 100000), default=1000, show_default=True)
    @h.dsn_option
    @h.schema_option
    def prune(older_than: str, failed_older_than: str | None, batch_size: int,
              dsn: str | None, schema: str) -> None:
        h.check_schema(schema)
        _refuse_sqlite(h, dsn)
        age = parse_age(older_than)
        failed_age = None if failed_older_than is None else parse_age(failed_older_than)
        chains = jobs = 0
        with h.connect(dsn) as conn:  # autocommit: every batch commits on its own
            while True:
                batch = _run(lambda: client.prune(
                    conn, age, batch_size=batch_size, failed_older_than=failed_age, schema=schema))
                chains += batch.chains
                jobs += batch.jobs
                if batch.chains < batch_size:
                    break
        click.echo(f"pruned {chains} chains ({jobs} jobs)")


def _run(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except QueuertError as exc:
        raise click.ClickException(str(exc)) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise click.ClickException("queuert is not installed there (or is older): run `queuert migrate`") from exc
    except psycopg.errors.UndefinedFunction as exc:
        raise click.ClickException("queuert is not installed there (or is older): run `queuert migrate`") from exc
