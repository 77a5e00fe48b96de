"""`manage.py signup EMAIL [--fail]`: the member and its welcome job in one transaction."""

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

import queuert
from signups.jobs import Welcome, welcome
from signups.models import Member


class Command(BaseCommand):
    help = "Sign a member up: the row and its welcome chain commit together, or neither does."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--fail", action="store_true", help="fail after starting the chain")

    def handle(self, *args, **options):
        with transaction.atomic():
            member = Member.objects.create(email=options["email"])
            # Django's own connection (4.2+ on psycopg 3): the chain joins
            # the atomic() block's transaction
            chain = queuert.start_chain(connection, welcome, Welcome(member_id=member.id))
            if options["fail"]:
                raise CommandError("payment declined: rolled back, no member and no job")
        self.stdout.write(f"member {member.id} chain {chain.chain_id}")
