"""The asyncio client (queuert.aio), one behaviour suite for both backends:
a psycopg AsyncConnection on PostgreSQL and an aiosqlite Connection on
SQLite (the ``db`` fixture, backends.py); a test only one of them can pass
is marked ``backend(name, reason=...)``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiosqlite
import psycopg
import pytest
from backends import Db

from queuert import (
    ChainHasDependentsError,
    ChainNotFoundError,
    ChainSpec,
    ChainWaitTimeout,
    InvalidArgumentError,
    InvalidJobStatusError,
    JobNotFoundError,
    JobType,
    PayloadValidationError,
    StartedChain,
    aio,
    continue_with,
    retry_on_conflict,
)
from queuert.hooks import transaction_hooks


@dataclass
class Order:
    order_id: int


charge = JobType("charge", input=Order, output=int, continues_with=lambda: [ship])
ship = JobType("ship", input=Order, output=str)

AConn = Any  # a psycopg.AsyncConnection or an aiosqlite.Connection


async def connect(db: Db, autocommit: bool = False) -> AConn:
    if db.name == "postgres":
        return await psycopg.AsyncConnection.connect(db.target, autocommit=autocommit)
    return await aiosqlite.connect(db.target, isolation_level=None if autocommit else "")


@pytest.fixture
async def aconn(db: Db) -> AsyncIterator[AConn]:
    connection = await connect(db)
    try:
        yield connection
    finally:
        await connection.close()


async def count_jobs(db: Db, conn: AConn) -> int:
    """Jobs as ``conn`` sees them (its own uncommitted ones too)."""
    table = "queuert.job" if db.name == "postgres" else "queuert_job"
    cur = await conn.execute(f"SELECT count(*) FROM {table}")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def in_transaction(db: Db, conn: AConn) -> bool:
    if db.name == "postgres":
        return bool(conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE)
    return bool(conn.in_transaction)


async def test_transactional_enqueue(db: Db, aconn: AConn) -> None:
    kept = await aio.start_chain(aconn, charge, Order(1))
    await aconn.commit()
    await aio.start_chain(aconn, charge, Order(2))
    await aconn.rollback()
    assert [j["id"] for j in db.jobs()] == [kept.id]


async def test_async_client_never_commits(db: Db, aconn: AConn) -> None:
    await aio.start_chain(aconn, "x", None)
    assert in_transaction(db, aconn)
    assert db.count_jobs() == 0
    await aconn.rollback()
    assert await count_jobs(db, aconn) == 0


async def test_validation_before_write(db: Db, aconn: AConn) -> None:
    with pytest.raises(PayloadValidationError):
        await aio.start_chain(aconn, charge, {"order_id": "abc"})  # type: ignore[arg-type]
    assert not in_transaction(db, aconn)
    assert await count_jobs(db, aconn) == 0


async def test_chain_lifecycle(aconn: AConn) -> None:
    started = await aio.start_chain(aconn, charge, Order(1), dedup_key="o1")
    again = await aio.start_chain(aconn, charge, Order(1), dedup_key="o1")
    assert again.deduplicated and again.chain_id == started.chain_id

    step = await aio.complete_chain(
        aconn, started.chain_id, continue_with=continue_with(ship, Order(1)), job_type=charge
    )
    assert step.continued_to is not None and step.continued_to.type_name == "ship"
    done = await aio.complete_chain(aconn, started.chain_id, "shipped", job_type=ship)
    assert done.chain_completed

    chain = await aio.get_chain(aconn, started.chain_id)
    assert chain.status == "completed" and chain.output == "shipped"
    assert [j.chain_index for j in chain.jobs] == [0, 1]

    with pytest.raises(InvalidJobStatusError):
        await aio.complete_chain(aconn, started.chain_id, "again")
    await aconn.rollback()
    with pytest.raises(ChainNotFoundError):
        await aio.get_chain(aconn, uuid.uuid4())


async def test_start_chains_cancel_delete(db: Db, aconn: AConn) -> None:
    kids = [uuid.uuid4(), uuid.uuid4()]
    started = await aio.start_chains(
        aconn,
        [ChainSpec("kid", {"i": 0}, id=kids[0]), ChainSpec("kid", {"i": 1}, id=kids[1]),
         ChainSpec("parent", None, blockers=kids)],
    )
    assert [s.status for s in started] == ["pending", "pending", "blocked"]
    with pytest.raises(ChainHasDependentsError) as info:
        await aio.cancel_chains(aconn, [kids[0]])
    assert info.value.chain_id == kids[0]
    await aconn.rollback()

    started = await aio.start_chains(
        aconn,
        [ChainSpec("kid", {"i": 0}, id=kids[0]), ChainSpec("kid", {"i": 1}, id=kids[1]),
         ChainSpec("parent", None, blockers=kids)],
    )
    parent = started[2].chain_id
    assert set(await aio.cancel_chains(aconn, [parent], cascade=True)) == {parent, *kids}
    assert await aio.retry_jobs(aconn, [parent]) == [parent]
    assert set(await aio.delete_chains(aconn, [parent], cascade=True)) == {parent, *kids}
    assert await count_jobs(db, aconn) == 0


async def test_trigger_and_errors(aconn: AConn) -> None:
    later = await aio.start_chain(aconn, "later", None, schedule_after=timedelta(hours=2))
    assert await aio.trigger_jobs(aconn, [later.id]) == [later.id]
    missing = uuid.uuid4()
    with pytest.raises(JobNotFoundError) as info:
        await aio.trigger_jobs(aconn, [missing])
    assert info.value.job_id == missing
    await aconn.rollback()
    with pytest.raises(InvalidArgumentError):
        await aio.start_chain(object(), "x", None)  # type: ignore[call-overload]


async def test_list_chains_pages(aconn: AConn) -> None:
    ids = []
    for i in range(5):
        ids.append((await aio.start_chain(aconn, "t", {"i": i})).chain_id)
        await aconn.commit()
        await asyncio.sleep(0.002)  # distinct created_at per chain
    seen: list[uuid.UUID] = []
    after = None
    while True:
        page = await aio.list_chains(aconn, type_name="t", limit=2, after=after)
        seen += [c.chain_id for c in page.items]
        if not page.next_cursor:
            break
        after = page.next_cursor
    assert seen == list(reversed(ids))


@pytest.mark.backend("postgres", reason="LISTEN/NOTIFY is PostgreSQL's; on SQLite wait_for_chain polls")
async def test_wait_for_chain_notification_and_timeout(db: Db) -> None:
    dsn = db.target
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as ac, \
            await psycopg.AsyncConnection.connect(dsn, autocommit=True) as other:
        started = await aio.start_chain(ac, "x", None)
        waiter = ac.info.backend_pid

        async def finish() -> None:
            # once the waiter has listened and found the chain unfinished
            # (its probe is its last statement, and it sits idle on LISTEN),
            # only the notification can end its wait before the 60 s poll
            while not await (await other.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'idle'"
                " AND query LIKE '%%transaction_isolation%%'", (waiter,)
            )).fetchone():
                await asyncio.sleep(0.01)
            await aio.complete_chain(other, started.chain_id, {"ok": True})

        task = asyncio.create_task(finish())
        chain = await aio.wait_for_chain(ac, started.chain_id, timeout=30, poll_interval=60)
        await task
        assert chain.output == {"ok": True}
        cur = await ac.execute("SELECT pg_listening_channels()")
        assert await cur.fetchall() == []

        pending = await aio.start_chain(ac, "x", None)
        with pytest.raises(ChainWaitTimeout):
            await aio.wait_for_chain(ac, pending.chain_id, timeout=0.3, poll_interval=0.1)


async def test_wait_for_chain_polls_and_times_out(db: Db) -> None:
    ac, other = await connect(db, autocommit=True), await connect(db, autocommit=True)
    try:
        started = await aio.start_chain(ac, "x", None)

        async def finish() -> None:
            await asyncio.sleep(0.2)
            await aio.complete_chain(other, started.chain_id, {"ok": True})

        task = asyncio.create_task(finish())
        chain = await aio.wait_for_chain(ac, started.chain_id, timeout=30, poll_interval=0.05)
        await task
        assert chain.output == {"ok": True}

        pending = await aio.start_chain(ac, "x", None)
        with pytest.raises(ChainWaitTimeout):
            await aio.wait_for_chain(ac, pending.chain_id, timeout=0.3, poll_interval=0.1)
    finally:
        await ac.close()
        await other.close()


@pytest.mark.backend("postgres", reason="a READ COMMITTED transaction sees each commit; SQLite reads one snapshot")
async def test_wait_for_chain_polls_inside_a_transaction(db: Db, aconn: AConn) -> None:
    async with await psycopg.AsyncConnection.connect(db.target, autocommit=True) as other:
        started = await aio.start_chain(other, "x", None)
        await aconn.execute("SELECT 1")

        async def finish() -> None:
            await asyncio.sleep(0.2)
            await aio.complete_chain(other, started.chain_id, 5)

        task = asyncio.create_task(finish())
        chain = await aio.wait_for_chain(aconn, started.chain_id, timeout=30, poll_interval=0.05)
        await task
        assert chain.output == 5


@pytest.mark.backend("postgres", reason="a dedup race under REPEATABLE READ is PostgreSQL's 40001")
async def test_async_retry_on_conflict(db: Db) -> None:
    dsn = db.target
    attempts = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as mine, \
            await psycopg.AsyncConnection.connect(dsn, autocommit=True) as rival:

        @retry_on_conflict
        async def signup() -> StartedChain:
            attempts.append(1)
            async with mine.transaction():
                await mine.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                await mine.execute("SELECT 1")
                if len(attempts) == 1:
                    await aio.start_chain(rival, "signup", None, dedup_key="u")
                return await aio.start_chain(mine, "signup", None, dedup_key="u")

        result = await signup()
        assert len(attempts) == 2 and result.deduplicated


async def test_async_hooks(aconn: AConn) -> None:
    async with transaction_hooks() as hooks:
        await aio.start_chain(aconn, charge, Order(9))
        child = await aio.start_chain(aconn, "child", None)
        await aio.complete_chain(aconn, child.chain_id, None)
        _, ready, chains, _ = hooks.pending
        await aconn.commit()
    assert ready == ["charge", "child"]
    assert chains == [str(child.chain_id)]


@pytest.mark.backend("sqlite", reason="aiosqlite's thread, where a call runs")
async def test_a_call_joins_the_statements_of_its_aiosqlite_connection(db: Db, aconn: AConn) -> None:
    """The call runs in aiosqlite's thread, after the application's
    statements on that connection and in their transaction; concurrent
    calls on one connection take turns there."""
    await aconn.execute("CREATE TABLE app_user (id INTEGER PRIMARY KEY)")
    await aconn.commit()
    await aconn.execute("INSERT INTO app_user VALUES (1)")
    started = await asyncio.gather(*(aio.start_chain(aconn, "t", {"i": i}) for i in range(20)))
    assert len({s.id for s in started}) == 20
    await aconn.rollback()
    assert await count_jobs(db, aconn) == 0
    with pytest.raises(InvalidArgumentError, match="aiosqlite"):
        import sqlite3

        await aio.start_chain(sqlite3.connect(db.target), "t", None)  # type: ignore[call-overload]
