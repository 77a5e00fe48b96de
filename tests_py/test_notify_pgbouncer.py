"""Behind PgBouncer in transaction pooling mode (a pgbouncer of our own on a
spare port, in front of the shared PostgreSQL): the engine's NOTIFY is off
for the database (``queuert.notify = 'none'``), LISTEN is not used, and the
wake-ups travel through Redis or NATS, published after commit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import queuert
from queuert import aio
from queuert.job import JobContext
from queuert.notify import NotifyEvent
from queuert.notify.broker import BrokerNotifier
from queuert.notify.nats import NatsNotifier
from queuert.notify.redis import RedisNotifier

from notify_brokers import NATS_URL, REDIS_URL, Server, own_pgbouncer, unique_prefix
from test_worker import fast, running


@pytest.fixture(scope="module")
def pgbouncer(base_dsn: str) -> Iterator[Server]:
    params = conninfo_to_dict(base_dsn)
    with own_pgbouncer(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)) as server:
        yield server


@pytest.fixture
def pooled(dsn: str, pgbouncer: Server) -> str:
    """The test database through pgbouncer, engine notifications off for it."""
    dbname = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} SET queuert.notify = 'none'").format(sql.Identifier(dbname)))
    params = conninfo_to_dict(dsn)
    params.update(host="127.0.0.1", port=str(pgbouncer.port))
    return make_conninfo(**params)  # type: ignore[arg-type]


@pytest.fixture(params=["redis", "nats"])
def make(request: pytest.FixtureRequest) -> Iterator[Callable[[], BrokerNotifier]]:
    prefix = unique_prefix()
    made: list[BrokerNotifier] = []

    def factory() -> BrokerNotifier:
        n: BrokerNotifier = (
            RedisNotifier(REDIS_URL, prefix=prefix) if request.param == "redis" else NatsNotifier(NATS_URL, prefix=prefix)
        )
        made.append(n)
        return n

    yield factory
    for n in made:
        asyncio.run(n.close())
    if request.param == "nats":
        from test_notify_brokers import drop_bucket

        asyncio.run(drop_bucket(f"{prefix}-wake-hints"))


async def _listen_direct(dsn: str) -> psycopg.AsyncConnection[Any]:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    for kind in ("job_ready", "chain_completed", "job_lost"):
        await conn.execute(f"LISTEN queuert_{kind}")
    return conn


async def _notifies(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    # drain what arrived (a round trip delivers pending notifications)
    await conn.execute("SELECT 1")
    return [f"{n.channel}:{n.payload}" async for n in conn.notifies(timeout=0.2)]


async def test_client_through_pgbouncer_publishes_through_the_broker(
    make: Callable[[], BrokerNotifier], dsn: str, pooled: str
) -> None:
    publisher, subscriber = make(), make()
    got: list[NotifyEvent] = []
    await subscriber.subscribe(got.append, kinds=("job_ready", "chain_completed"))
    direct = await _listen_direct(dsn)
    conn = await psycopg.AsyncConnection.connect(pooled, prepare_threshold=None)
    try:
        assert (await (await conn.execute("SHOW queuert.notify")).fetchone()) == ("none",)
        for _ in range(3):  # more than once: a prepared statement would break on another backend
            async with queuert.transaction_hooks(publisher):
                async with conn.transaction():
                    started = await aio.start_chain(conn, "pooled", {"n": 1})
                    more = await aio.start_chains(conn, [queuert.ChainSpec("pooled-batch", i) for i in range(5)])
            async with queuert.transaction_hooks(publisher):
                async with conn.transaction():
                    await aio.complete_chain(conn, started.chain_id, {"done": True})
        with pytest.raises(RuntimeError):
            async with queuert.transaction_hooks(publisher):
                async with conn.transaction():
                    await aio.start_chain(conn, "rolled-back")
                    raise RuntimeError("roll back")
        assert await publisher.flush()
        deadline = asyncio.get_running_loop().time() + 10
        while len([e for e in got if e.kind == "chain_completed"]) < 3:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        ready = [e.payload for e in got if e.kind == "job_ready"]
        assert sorted(set(ready)) == ["pooled", "pooled-batch"] and "rolled-back" not in ready
        assert await _notifies(direct) == []  # the engine sent no NOTIFY at all
        async with conn.transaction():
            cur = await conn.execute("SELECT type_name, status::text, count(*) FROM queuert.job GROUP BY 1, 2 ORDER BY 1")
            assert await cur.fetchall() == [("pooled", "completed", 3), ("pooled-batch", "pending", 15)]
    finally:
        await conn.close()
        await direct.close()


def test_sync_client_through_pgbouncer(make: Callable[[], BrokerNotifier], pooled: str) -> None:
    publisher = make()
    with psycopg.connect(pooled, prepare_threshold=None) as conn:
        for i in range(3):
            with queuert.transaction_hooks(publisher):
                with conn.transaction():
                    queuert.start_chain(conn, "sync-pooled", i)
    # three commits, each published after commit (nothing dropped)
    assert asyncio.run(publisher.flush())
    assert publisher.published >= 1 and publisher.dropped == 0
    # each start topped up the budget by one
    assert [asyncio.run(publisher.take_wake_hint(["sync-pooled"])) for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_worker_through_pgbouncer_with_a_broker(
    make: Callable[[], BrokerNotifier], dsn: str, pooled: str, mode: str
) -> None:
    worker = fast(pooled, mode=mode, concurrency=3, notifier=make(), prepare_threshold=None)

    @worker.handler("first")
    async def first(job: JobContext[int]) -> Any:
        return job.continue_with("second", job.input)

    @worker.handler("second")
    async def second(job: JobContext[int]) -> int:
        return job.input * 2

    @worker.handler("total")
    async def total(job: JobContext[Any]) -> int:
        return sum(int(b.output) for b in job.blockers)

    producer = make()
    direct = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    conn = await psycopg.AsyncConnection.connect(pooled, prepare_threshold=None)
    try:
        async with running(worker):
            async with queuert.transaction_hooks(producer):
                async with conn.transaction():
                    parts = [(await aio.start_chain(conn, "first", i)).chain_id for i in range(5)]
                    fan_in = (await aio.start_chain(conn, "total", None, blockers=parts)).chain_id
            done = await aio.wait_for_chain(direct, fan_in, timeout=60)
        assert done.output == sum(2 * i for i in range(5))
    finally:
        await conn.close()
        await direct.close()


async def _server_settings(pooled: str, n: int = 10) -> list[tuple[str | None, int]]:
    """``queuert.notify`` as each server connection of the pool has it: ``n``
    clients (the pool's default_pool_size) each hold a transaction open at
    once, so each sits on a server connection of its own, every one the pool has."""
    conns: list[psycopg.AsyncConnection[Any]] = []
    seen: list[tuple[str | None, int]] = []
    try:
        for _ in range(n):
            conn = await psycopg.AsyncConnection.connect(pooled, prepare_threshold=None)
            conns.append(conn)
            cur = await conn.execute("SELECT current_setting('queuert.notify', true), pg_backend_pid()")
            row = await cur.fetchone()
            assert row is not None
            seen.append((row[0], row[1]))
    finally:
        for conn in conns:
            await conn.close()
    return seen


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_worker_turns_engine_notify_off_per_transaction_through_pgbouncer(
    make: Callable[[], BrokerNotifier], dsn: str, pgbouncer: Server, mode: str
) -> None:
    """No database or role setting this time: the worker itself keeps the
    engine's NOTIFY off in every transaction it runs through the pool (SET
    LOCAL: a session SET would land on one server connection and stay there
    for whoever gets it next), acknowledgements and reaping included, and
    publishes through its broker instead. A LISTEN on the database hears
    nothing; no server connection keeps a setting."""
    params = conninfo_to_dict(dsn)
    params.update(host="127.0.0.1", port=str(pgbouncer.port))
    pooled = make_conninfo(**params)  # type: ignore[arg-type]
    worker = fast(pooled, mode=mode, concurrency=3, notifier=make(), prepare_threshold=None, reap_interval=0.2)

    @worker.handler("first")
    async def first(job: JobContext[int]) -> Any:
        return job.continue_with("second", job.input)

    @worker.handler("second")
    async def second(job: JobContext[int]) -> int:
        return job.input * 2

    @worker.handler("total")
    async def total(job: JobContext[Any]) -> int:
        return sum(int(b.output) for b in job.blockers)

    @worker.handler("orphan")
    async def orphan(job: JobContext[int]) -> int:
        return job.input

    producer = make()
    direct = await _listen_direct(dsn)
    # the test's own writes send no NOTIFY either: whatever the listener hears
    # came from the worker
    conn = await psycopg.AsyncConnection.connect(dsn, options="-c queuert.notify=none")
    try:
        await conn.set_autocommit(True)
        ghost = await aio.start_chain(conn, "orphan", 5)
        cur = await conn.execute(
            "SELECT id FROM queuert.claim(worker_id => 'ghost', type_names => ARRAY['orphan'], "
            "max_jobs => 1, lease => interval '1 millisecond')"
        )
        assert [r[0] for r in await cur.fetchall()] == [ghost.id]  # its worker died: reaped below
        await conn.set_autocommit(False)
        async with running(worker):
            async with queuert.transaction_hooks(producer):
                async with conn.transaction():
                    parts = [(await aio.start_chain(conn, "first", i)).chain_id for i in range(5)]
                    fan_in = (await aio.start_chain(conn, "total", None, blockers=parts)).chain_id
            await conn.set_autocommit(True)
            done = await aio.wait_for_chain(conn, fan_in, timeout=60, poll_interval=0.05)
            reaped = await aio.wait_for_chain(conn, ghost.chain_id, timeout=60, poll_interval=0.05)
        assert done.output == sum(2 * i for i in range(5)) and reaped.output == 5
        assert worker.stats.reaped == 1
        assert await _notifies(direct) == []  # not one NOTIFY from the worker's transactions
        settings = await _server_settings(pooled)
        assert len({pid for _, pid in settings}) == 10
        assert [s for s, _ in settings if s] == []  # no session setting left behind on the pool
    finally:
        await conn.close()
        await direct.close()
