"""The signup story: ``queuert demo`` (and ``make demo``).

1. A signup inserts the user AND starts its welcome-email chain in one
   transaction: both commit, or neither does.
2. A second signup fails after starting its chain: the rollback leaves
   neither a user nor a job.
3. A worker runs the chain: send the welcome email, then continue to a
   follow-up step scheduled a moment later.
4. Fan-in: a report chain waits on three child chains (one per region) and
   sums their outputs once all three are complete.

Runs in its own database (``queuert_demo``, recreated each time) on the
server it is given and finishes by itself in a few seconds. It ships inside
the package so that an installed ``queuert`` can show itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import timedelta
from typing import Any

import psycopg
import pydantic
from psycopg import sql
from psycopg.conninfo import make_conninfo

import queuert
from queuert import JobType, aio
from queuert.job import JobContext
from queuert.worker import Worker
from queuert.migrate import migrate

DEFAULT_DEMO_DB = "queuert_demo"


@dataclasses.dataclass
class Signup:
    user_id: int
    email: str


class EmailSent(pydantic.BaseModel):
    message_id: str


class RegionCount(pydantic.BaseModel):
    region: str
    users: int


follow_up = JobType("follow-up-email", input=Signup, output=EmailSent, continues_with=())
welcome_email = JobType("send-welcome-email", input=Signup, continues_with=[follow_up])
count_region = JobType("count-region", input=str, output=RegionCount)
report = JobType("signup-report", input=None, output=int)

worker = Worker(concurrency=10, poll_interval=0.5)  # conninfo set in main()


@worker.handler(welcome_email)
async def send_welcome(job: JobContext[Signup]) -> queuert.Continuation:
    print(f"  [worker] welcome email to {job.input.email} (attempt {job.attempt})")
    # In real life three days later; here half a second.
    return job.continue_with(follow_up, job.input, schedule_after=timedelta(seconds=0.5))


@worker.handler(follow_up)
def send_follow_up(job: JobContext[Signup]) -> EmailSent:  # sync: runs in a thread
    print(f"  [worker] follow-up email to {job.input.email}")
    return EmailSent(message_id=f"msg-{job.input.user_id}")


@worker.handler(count_region)
async def do_count(job: JobContext[str]) -> RegionCount:
    users = {"eu": 3, "us": 5, "apac": 2}[job.input]
    print(f"  [worker] counted {users} users in {job.input}")
    return RegionCount(region=job.input, users=users)


@worker.handler(report)
async def do_report(job: JobContext[None]) -> int:
    total = sum(b.output_as(count_region).users for b in job.blockers)
    print(f"  [worker] report: {total} users across {len(job.blockers)} regions")
    return total


def fresh_database(base_dsn: str, name: str) -> str:
    with psycopg.connect(base_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(base_dsn, dbname=name)
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " email text NOT NULL UNIQUE)"
        )
    return dsn


def signup(conn: psycopg.Connection[Any], email: str, *, crash: bool = False) -> None:
    """The application's own code: one transaction for the user and the job."""
    with conn.transaction():
        user_id = one(conn, "INSERT INTO users (email) VALUES (%s) RETURNING id", (email,))
        chain = queuert.start_chain(conn, welcome_email, Signup(user_id=user_id, email=email))
        print(f"  signup {email}: user {user_id}, chain {chain.chain_id} ({chain.status})")
        if crash:
            raise RuntimeError("payment provider down")


def one(conn: psycopg.Connection[Any], query: str, params: tuple[object, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


async def run_worker_until_done(dsn: str, chain_ids: list[Any]) -> None:
    task = asyncio.create_task(worker.run_async())
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for chain_id in chain_ids:
            await aio.wait_for_chain(conn, chain_id, timeout=30)
    worker.stop()
    await task


def run(base_dsn: str, database: str = DEFAULT_DEMO_DB) -> int:
    """Run the story in a new database ``database`` on ``base_dsn``'s server."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING)
    dsn = fresh_database(base_dsn, database)
    worker.conninfo = dsn
    print(f"== database {database} migrated")

    with psycopg.connect(dsn) as conn:
        print("\n== 1. signup: user and job in one transaction (COMMIT)")
        signup(conn, "ada@example.com")

        print("\n== 2. signup that fails after starting its chain (ROLLBACK)")
        try:
            signup(conn, "bob@example.com", crash=True)
        except RuntimeError as exc:
            print(f"  signup failed: {exc}")
        users = one(conn, "SELECT count(*) FROM users")
        jobs = one(conn, "SELECT count(*) FROM queuert.job")
        print(f"  users: {users}, jobs: {jobs}  (bob left no user and no job)")
        assert (users, jobs) == (1, 1)

        print("\n== 3. fan-in: a report chain waits on three region chains")
        regions = [queuert.start_chain(conn, count_region, r) for r in ("eu", "us", "apac")]
        parent = queuert.start_chain(conn, report, None, blockers=[r.chain_id for r in regions])
        conn.commit()
        print(f"  report chain {parent.chain_id} is {parent.status}")
        welcome_chain = one(
            conn, "SELECT chain_id FROM queuert.chain WHERE type_name = 'send-welcome-email'"
        )

    print("\n== 4. a worker runs everything")
    asyncio.run(run_worker_until_done(dsn, [welcome_chain, parent.chain_id]))

    print("\n== what the database says")
    with psycopg.connect(dsn) as conn:
        for chain_id in (welcome_chain, parent.chain_id):
            chain = queuert.get_chain(conn, chain_id)
            steps = " -> ".join(f"{j.type_name}:{j.status}" for j in chain.jobs)
            print(f"  {chain.type_name}: {chain.status}, output {chain.output}  [{steps}]")
        assert queuert.get_chain(conn, welcome_chain).output == {"message_id": "msg-1"}
        assert queuert.get_chain(conn, parent.chain_id).output == 10
        print("\n  select * from queuert.stats:")
        for row in conn.execute(
            "SELECT type_name, status, count FROM queuert.stats ORDER BY 1, 2"
        ):
            print(f"    {row[0]:<20} {row[1]:<10} {row[2]}")
    print(f"\ndone: inspect it with  psql {dsn!r}  or  queuert status --dsn {dsn!r}")
    return 0

