"""The asyncio client (queuert.aio) against a real PostgreSQL (fixtures: dsn, aconn)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta

import psycopg
import pytest

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


async def count_jobs(conn: psycopg.AsyncConnection) -> int:
    cur = await conn.execute("SELECT count(*) FROM queuert.job")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_transactional_enqueue(aconn: psycopg.AsyncConnection, dsn: str) -> None:
    async with aconn.transaction():
        kept = await aio.start_chain(aconn, charge, Order(1))
    with pytest.raises(RuntimeError):
        async with aconn.transaction():
            await aio.start_chain(aconn, charge, Order(2))
            raise RuntimeError("rolled back")
    async with await psycopg.AsyncConnection.connect(dsn) as other:
        cur = await other.execute("SELECT id FROM queuert.job")
        assert [r[0] for r in await cur.fetchall()] == [kept.id]


async def test_async_client_never_commits(aconn: psycopg.AsyncConnection) -> None:
    await aio.start_chain(aconn, "x", None)
    assert aconn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    await aconn.rollback()
    assert await count_jobs(aconn) == 0


async def test_validation_before_write(aconn: psycopg.AsyncConnection) -> None:
    with pytest.raises(PayloadValidationError):
        await aio.start_chain(aconn, charge, {"order_id": "abc"})  # type: ignore[arg-type]
    assert aconn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert await count_jobs(aconn) == 0


async def test_chain_lifecycle(aconn: psycopg.AsyncConnection) -> None:
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


async def test_start_chains_cancel_delete(aconn: psycopg.AsyncConnection) -> None:
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
    assert await count_jobs(aconn) == 0


async def test_trigger_and_errors(aconn: psycopg.AsyncConnection) -> None:
    later = await aio.start_chain(aconn, "later", None, schedule_after=timedelta(hours=2))
    assert await aio.trigger_jobs(aconn, [later.id]) == [later.id]
    missing = uuid.uuid4()
    with pytest.raises(JobNotFoundError) as info:
        await aio.trigger_jobs(aconn, [missing])
    assert info.value.job_id == missing
    await aconn.rollback()
    with pytest.raises(InvalidArgumentError):
        await aio.start_chain(object(), "x", None)  # type: ignore[call-overload]


async def test_list_chains_pages(aconn: psycopg.AsyncConnection) -> None:
    await aconn.set_autocommit(True)
    ids = [(await aio.start_chain(aconn, "t", {"i": i})).chain_id for i in range(5)]
    seen: list[uuid.UUID] = []
    after = None
    while True:
        page = await aio.list_chains(aconn, type_name="t", limit=2, after=after)
        seen += [c.chain_id for c in page.items]
        if not page.next_cursor:
            break
        after = page.next_cursor
    assert seen == list(reversed(ids))


async def test_wait_for_chain_notification_and_timeout(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as ac, \
            await psycopg.AsyncConnection.connect(dsn, autocommit=True) as other:
        started = await aio.start_chain(ac, "x", None)

        async def finish() -> None:
            await asyncio.sleep(0.2)
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


async def test_wait_for_chain_polls_inside_a_transaction(aconn: psycopg.AsyncConnection, dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as other:
        started = await aio.start_chain(other, "x", None)
        await aconn.execute("SELECT 1")

        async def finish() -> None:
            await asyncio.sleep(0.2)
            await aio.complete_chain(other, started.chain_id, 5)

        task = asyncio.create_task(finish())
        chain = await aio.wait_for_chain(aconn, started.chain_id, timeout=30, poll_interval=0.05)
        await task
        assert chain.output == 5


async def test_async_retry_on_conflict(dsn: str) -> None:
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


async def test_async_hooks(aconn: psycopg.AsyncConnection) -> None:
    async with transaction_hooks() as hooks:
        async with aconn.transaction():
            await aio.start_chain(aconn, charge, Order(9))
            _, ready, _, _ = hooks.pending
    assert ready == ["charge"]
