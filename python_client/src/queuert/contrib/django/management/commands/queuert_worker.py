"""``manage.py queuert_worker [MODULE:ATTR]``: a queuert worker on the Django database."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from queuert.contrib.django.conf import conninfo, schema, worker_target
from queuert.worker import run_worker_cli


class Command(BaseCommand):
    help = (
        "Run a queuert worker for the handlers registered on MODULE:ATTR (default: "
        "settings.QUEUERT['WORKER']) on the Django database, until SIGTERM or SIGINT "
        "(in-flight jobs are finished or released, none is lost)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("target", nargs="?", metavar="MODULE:ATTR",
                            help="A queuert Worker, a factory returning one, or a mapping of job type to handler.")
        parser.add_argument("--database", default=None, help="DATABASES alias (default: QUEUERT['DATABASE'], else 'default').")
        parser.add_argument("--schema", default=None, help="Schema (default: QUEUERT['SCHEMA'], else queuert).")
        parser.add_argument("--concurrency", type=int, default=None, help="Jobs processed at the same time.")
        parser.add_argument("--types", default=None, metavar="A,B", help="Only these job types.")
        parser.add_argument("--mode", choices=["staged", "atomic"], default=None, help="Processing mode.")

    def handle(self, *args: Any, **options: Any) -> None:
        target = options["target"] or worker_target()
        if not target:
            raise CommandError("name the worker: queuert_worker MODULE:ATTR, or settings.QUEUERT['WORKER']")
        if options["concurrency"] is not None and options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        types = [t.strip() for t in options["types"].split(",") if t.strip()] if options["types"] else None
        try:
            run_worker_cli(
                target=target,
                dsn=conninfo(options["database"]),
                schema=options["schema"] or schema(),
                concurrency=options["concurrency"],
                types=types,
                mode=options["mode"],
            )
        except (ImportError, AttributeError, ValueError) as exc:
            raise CommandError(f"cannot run worker {target}: {exc}") from exc
