"""Job types and the worker of the example (run by `manage.py queuert_worker`)."""

import dataclasses

from django.db import close_old_connections
from django.utils import timezone

import queuert
from queuert import JobContext, JobType


@dataclasses.dataclass
class Welcome:
    member_id: int


welcome = JobType("send-welcome-email", input=Welcome, output=str)

worker = queuert.Worker(concurrency=4, poll_interval=1.0)


@worker.handler(welcome)
def send_welcome(job: JobContext[Welcome]) -> str:
    # A plain function: it runs in a worker thread, where the ORM may be used.
    # Django closes stale connections per request; a worker has no requests.
    close_old_connections()
    from signups.models import Member

    member = Member.objects.get(id=job.input.member_id)
    Member.objects.filter(id=member.id).update(welcomed_at=timezone.now())
    return f"welcomed {member.email}"
