"""``manage.py queuert_migrate``: ``queuert migrate`` on the Django database."""

from __future__ import annotations

from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError, CommandParser

from queuert.contrib.django.conf import conninfo, schema
from queuert.migrate import MigrationError, migrate


class Command(BaseCommand):
    help = (
        "Install or upgrade queuert (tables, functions, views) in the database of "
        "settings.QUEUERT['DATABASE'] (default: 'default'), in one transaction. "
        "Safe to run again: applies only what is missing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=None, help="DATABASES alias (default: QUEUERT['DATABASE'], else 'default').")
        parser.add_argument("--schema", default=None, help="Schema (default: QUEUERT['SCHEMA'], else queuert).")
        parser.add_argument("--grant-to", default=None, metavar="ROLE",
                            help="Also let ROLE call the engine's functions and read its tables.")

    def handle(self, *args: Any, **options: Any) -> None:
        target_schema = options["schema"] or schema()
        try:
            applied = migrate(conninfo(options["database"]), schema=target_schema, grant_to=options["grant_to"])
        except MigrationError as exc:
            raise CommandError(str(exc)) from exc
        except psycopg.OperationalError as exc:
            raise CommandError(f"cannot connect to PostgreSQL: {exc}") from exc
        for name in applied:
            self.stdout.write(f"applied {name}")
        if not applied:
            self.stdout.write("no new migrations")
        self.stdout.write(f"engine SQL up to date in schema {target_schema}")
