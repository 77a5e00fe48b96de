"""The broker adapters at the notifier level, one suite for all of them:
Redis, Redis Cluster (three nodes of our own) and NATS with JetStream, each
test on its own channel prefix (and KV bucket) of the shared servers."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

import queuert
from queuert import aio
from queuert.notify import NotifyEvent
from queuert.notify.broker import BrokerNotifier
from queuert.notify.nats import NatsNotifier, kv_key
from queuert.notify.redis import RedisNotifier

from notify_brokers import NATS_URL, REDIS_URL, drop_bucket, redis_cluster, unique_prefix

BROKERS = ["redis", "redis-cluster", "nats"]


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    with redis_cluster() as ports:
        yield ports


Make = Callable[..., BrokerNotifier]


@pytest.fixture(params=BROKERS)
def make(request: pytest.FixtureRequest) -> Iterator[Make]:
    """A factory of notifiers of one broker, all on this test's prefix;
    closes them and removes the test's NATS bucket afterwards."""
    prefix = unique_prefix()
    made: list[BrokerNotifier] = []
    kind = request.param

    def factory(**options: Any) -> BrokerNotifier:
        options.setdefault("prefix", prefix)
        notifier: BrokerNotifier
        if kind == "redis":
            notifier = RedisNotifier(REDIS_URL, **options)
        elif kind == "redis-cluster":
            port = request.getfixturevalue("cluster_ports")[len(made) % 3]
            notifier = RedisNotifier(f"redis://127.0.0.1:{port}", cluster=True, **options)
        else:
            notifier = NatsNotifier(NATS_URL, **options)
        made.append(notifier)
        return notifier

    factory.kind = kind  # type: ignore[attr-defined]
    yield factory
    for notifier in made:
        asyncio.run(notifier.close())  # any loop will do: the notifier has its own
    if kind == "nats":
        asyncio.run(drop_bucket(f"{prefix}-wake-hints"))


async def until(check: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def of(events: list[NotifyEvent], kind: str) -> list[str]:
    return [e.payload for e in events if e.kind == kind]


async def test_events_reach_subscribers_filtered_on_their_loop(make: Make) -> None:
    publisher, subscriber = make(), make()
    events: list[tuple[NotifyEvent, threading.Thread]] = []
    everything: list[NotifyEvent] = []
    await subscriber.subscribe(
        lambda e: events.append((e, threading.current_thread())), kinds=("job_ready",), type_names=["wanted"]
    )
    await subscriber.subscribe(everything.append)
    # subscribed means live: the first publish already arrives
    await publisher.publish_job_ready(["unwanted", "wanted"])
    await publisher.publish_chain_completed(["c-1", "c-1", "c-2"])
    await publisher.publish_job_lost(["j-1"])
    await until(lambda: of(everything, "job_lost") == ["j-1"] and len(of(everything, "chain_completed")) == 2)
    await until(lambda: len(of(everything, "job_ready")) == 2)
    assert sorted(of(everything, "job_ready")) == ["unwanted", "wanted"]
    assert sorted(of(everything, "chain_completed")) == ["c-1", "c-2"]  # deduplicated
    assert [(e.kind, e.payload) for e, _ in events] == [("resync", ""), ("job_ready", "wanted")]
    assert all(t is threading.current_thread() for _, t in events)
    assert of(everything, "resync") == [""]
    # one broker subscription for both listeners
    assert subscriber.connections == 1


async def test_one_subscription_per_channel_is_shared(make: Make) -> None:
    notifier = make()
    a: list[NotifyEvent] = []
    b: list[NotifyEvent] = []
    sub_a = await notifier.subscribe(a.append, kinds=("job_ready",))
    await notifier.subscribe(b.append, kinds=("job_ready", "chain_completed"))
    if isinstance(notifier, RedisNotifier):
        # the server sees one subscriber per channel, whatever the listeners
        client = notifier._redis()
        counts = await notifier._on_io(_numsub(client, list(notifier.channels.values())))
        assert counts == {notifier.channels["job_ready"]: 1, notifier.channels["chain_completed"]: 1,
                          notifier.channels["job_lost"]: 0}
    await notifier.publish_job_ready(["t"])
    await notifier.publish_chain_completed(["c"])
    # each listener's delivery is queued on its own (a's first): b's "t" can
    # follow a's by a moment, and the two publications may use two
    # connections (Redis's direct path), so nothing orders "c" before it
    await until(lambda: of(b, "chain_completed") == ["c"] and of(a, "job_ready") == ["t"] and of(b, "job_ready"))
    assert of(b, "job_ready") == ["t"] and of(a, "chain_completed") == []
    await sub_a.close()
    await notifier.publish_job_ready(["after"])
    await until(lambda: of(b, "job_ready") == ["t", "after"])
    assert of(a, "job_ready") == ["t"]
    assert notifier.connections == 1  # the second listener extended the live subscription
    # each listener got exactly one resync: at subscribe, none since
    assert of(a, "resync") == [""] and of(b, "resync") == [""]


async def _numsub(client: Any, channels: list[str]) -> dict[str, int]:
    if isinstance(client, RedisCluster):
        # classic pub/sub: subscribers live on one node; add every node up
        totals = dict.fromkeys(channels, 0)
        for node in client.get_nodes():
            r = aioredis.Redis(host=node.host, port=node.port)
            for ch, n in await r.pubsub_numsub(*channels):
                totals[ch.decode()] += n
            await r.aclose()
        return totals
    return {ch.decode(): n for ch, n in await client.pubsub_numsub(*channels)}


async def test_wake_budget_counts_and_is_taken_atomically(make: Make) -> None:
    # a take that outlives hint_timeout claims by design (fail open); this
    # test is of atomicity, so slow takes on a loaded machine get time. The
    # Redis client's socket timeout (send_timeout) must be longer still: a
    # Cluster client retries a timed-out take, which then spends two units
    publisher, worker_side = (make(hint_timeout=60.0, send_timeout=120.0) for _ in range(2))
    assert publisher.wake_budgets
    await publisher.publish_job_ready({"burst": 5})
    await publisher.publish_job_ready(["single", "single"])  # a repeated name counts twice
    assert await publisher.flush()
    # 16 concurrent takers from two notifiers (two "processes") and threads
    results: list[bool] = []

    async def take(n: BrokerNotifier) -> None:
        results.append(await n.take_wake_hint(["burst"]))

    await asyncio.gather(*(take(worker_side if i % 2 else publisher) for i in range(16)))
    assert sorted(results) == [False] * 11 + [True] * 5
    # the first type with budget left is used; none left is False
    assert await worker_side.take_wake_hint(["burst", "single"]) is True
    assert await worker_side.take_wake_hint(["single"]) is True
    assert await worker_side.take_wake_hint(["single", "burst", "never"]) is False


async def test_wake_budget_is_there_before_the_event(make: Make) -> None:
    publisher, worker_side, other = make(), make(), make()
    took: list[bool] = []
    woke = asyncio.Event()

    def on_event(e: NotifyEvent) -> None:
        if e.kind == "job_ready":
            woke.set()

    # a second listener, so that worker_side is not alone: a lone listener
    # claims without asking (queuert.notify._alone), its "True" would not
    # show the unit was there, and a NATS publisher that counts one listener
    # may send the event first on purpose
    await other.subscribe(lambda e: None, kinds=("job_ready",))
    await worker_side.subscribe(on_event, kinds=("job_ready",))
    for _ in range(5):
        woke.clear()
        await publisher.publish_job_ready(["t"])
        await asyncio.wait_for(woke.wait(), 10)
        took.append(await worker_side.take_wake_hint(["t"]))
    assert took == [True] * 5


async def test_wake_budget_expires(make: Make) -> None:
    # 3 s, not 1: the units must outlive the flush and the first take, and
    # a loaded 2-core machine can stall a second between them
    notifier = make(hint_ttl=3.0)
    await notifier.publish_job_ready({"stale": 3})
    assert await notifier.flush()
    assert await notifier.take_wake_hint(["stale"]) is True

    async def gone() -> bool:
        if isinstance(notifier, RedisNotifier):
            return not await notifier._on_io(_exists(notifier._redis(), notifier.budget_key("stale")))
        assert isinstance(notifier, NatsNotifier)
        return not await notifier._on_io(_kv_exists(notifier, "stale"))

    deadline = time.monotonic() + 30
    while not await gone():
        assert time.monotonic() < deadline, "the budget never expired"
        await asyncio.sleep(0.1)
    assert await notifier.take_wake_hint(["stale"]) is False


async def _exists(client: Any, key: str) -> bool:
    return bool(await client.exists(key))


async def _kv_exists(notifier: NatsNotifier, type_name: str) -> bool:
    await notifier._connection()
    assert notifier._kv is not None
    try:
        await notifier._kv.get(kv_key(type_name))
        return True
    except Exception:
        return False


async def test_publish_from_threads_and_foreign_loops(make: Make) -> None:
    publisher, subscriber = make(), make()
    got: list[NotifyEvent] = []
    await subscriber.subscribe(got.append, kinds=("chain_completed",))

    def in_thread(i: int) -> None:
        # a fresh loop per call, as transaction_hooks does in sync code
        for j in range(10):
            asyncio.run(publisher.publish_chain_completed([f"{i}-{j}"]))

    threads = [threading.Thread(target=in_thread, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    await until(lambda: len(of(got, "chain_completed")) == 40)
    assert sorted(of(got, "chain_completed")) == sorted(f"{i}-{j}" for i in range(4) for j in range(10))
    assert publisher.dropped == 0


def test_transaction_hooks_publish_after_commit_only(make: Make, conn: psycopg.Connection[Any]) -> None:
    publisher, subscriber = make(), make()
    got: list[NotifyEvent] = []
    ready = threading.Event()

    def on_event(e: NotifyEvent) -> None:
        got.append(e)
        if e.kind == "job_ready":
            ready.set()

    # a subscriber on its own loop in a thread (a worker process, say)
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    try:
        asyncio.run_coroutine_threadsafe(subscriber.subscribe(on_event), loop).result(10)
        with pytest.raises(RuntimeError):
            with queuert.transaction_hooks(publisher):
                with conn.transaction():
                    queuert.start_chain(conn, "rolled-back")
                    raise RuntimeError("rollback")
        with queuert.transaction_hooks(publisher):
            with conn.transaction():
                started = queuert.start_chain(conn, "committed")
                assert asyncio.run(publisher.flush()) and not ready.is_set()  # not before commit
        assert ready.wait(10)
        with queuert.transaction_hooks(publisher):
            with conn.transaction():
                queuert.complete_chain(conn, started.chain_id, {"ok": True})
        deadline = time.monotonic() + 10
        while str(started.chain_id) not in of(got, "chain_completed"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert of(got, "job_ready") == ["committed"]
        # the hooks' job_ready topped up the budget: one unit
        took = [asyncio.run(publisher.take_wake_hint(["committed"])) for _ in range(2)]
        assert took == [True, False]
    finally:
        asyncio.run_coroutine_threadsafe(subscriber.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)


async def test_async_transaction_hooks_publish(make: Make, aconn: psycopg.AsyncConnection[Any]) -> None:
    publisher, subscriber = make(), make()
    got: list[NotifyEvent] = []
    await subscriber.subscribe(got.append, kinds=("job_ready",))
    async with queuert.transaction_hooks(publisher):
        async with aconn.transaction():
            await aio.start_chains(
                aconn, [queuert.ChainSpec("a", None), queuert.ChainSpec("a", None), queuert.ChainSpec("b", None)]
            )
    await until(lambda: sorted(of(got, "job_ready")) == ["a", "b"])


async def test_close_flushes_and_the_notifier_can_be_used_again(make: Make) -> None:
    publisher, subscriber, witness = make(), make(), make()
    got: list[NotifyEvent] = []
    heard: list[NotifyEvent] = []
    await subscriber.subscribe(got.append, kinds=("job_lost",))
    await witness.subscribe(heard.append, kinds=("job_lost",))
    await publisher.publish_job_lost(["before-close"])
    await publisher.close()  # sends what is buffered first
    await until(lambda: of(got, "job_lost") == ["before-close"])
    assert publisher._io is None
    await publisher.publish_job_lost(["after-close"])
    await until(lambda: of(got, "job_lost") == ["before-close", "after-close"])
    await subscriber.close()
    events = list(got)
    await subscriber.publish_job_lost(["unheard"])
    assert await subscriber.flush()
    # the broker delivered it (a subscriber still listening heard it), and
    # the closed subscriber's listener was not called
    await until(lambda: "unheard" in of(heard, "job_lost"))
    assert got == events


async def test_a_failing_listener_is_logged_and_others_still_get_events(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = make()
    good: list[str] = []
    bad_calls: list[str] = []

    def bad(e: NotifyEvent) -> None:
        bad_calls.append(e.kind)
        raise RuntimeError("listener bug")

    await notifier.subscribe(bad)
    await notifier.subscribe(lambda e: good.append(e.kind))
    with caplog.at_level(logging.ERROR, logger="queuert.notify"):
        await notifier.publish_job_ready(["t"])
        # the failing listener was called, and the other one still got the event
        await until(lambda: "job_ready" in good and "job_ready" in bad_calls)
    failures = [r for r in caplog.records if "notify listener" in r.getMessage()]
    assert failures and all(r.exc_info and "listener bug" in str(r.exc_info[1]) for r in failures)


async def test_eight_idle_listeners_one_job_one_claim(make: Make, dsn: str) -> None:
    """The wake-hint contract end to end at the notifier level: eight idle
    "workers" (a notifier each, as eight processes would have) hear the
    job_ready of one started job; each takes a unit before claiming, so one
    claim runs, not eight, and it gets the job."""
    # a take that outlives hint_timeout (1 s by default) claims by design
    # (fail open): on a loaded machine that is a second claim, not the
    # contract under test. The Redis client's socket timeout (send_timeout)
    # must not cut the take first (a Cluster client retries it: two units)
    listeners = [make(hint_timeout=60.0, send_timeout=120.0) for _ in range(8)]
    producer = make()
    claims: list[tuple[int, Any]] = []
    woken: list[int] = []
    tasks: set[asyncio.Task[None]] = set()

    async def wake(i: int, notifier: BrokerNotifier) -> None:
        woken.append(i)
        if not await notifier.take_wake_hint(["solo"]):
            return  # another worker took it: back to sleep
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            cur = await conn.execute("SELECT id FROM queuert.claim(%s, ARRAY['solo'])", (f"w{i}",))
            claims.append((i, await cur.fetchall()))

    def listener(i: int, notifier: BrokerNotifier) -> Callable[[NotifyEvent], None]:
        def on_event(e: NotifyEvent) -> None:
            if e.kind == "job_ready":
                task = asyncio.get_running_loop().create_task(wake(i, notifier))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        return on_event

    for i, n in enumerate(listeners):
        await n.subscribe(listener(i, n), kinds=("job_ready",), type_names=["solo"])
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        async with queuert.transaction_hooks(producer):
            async with conn.transaction():
                started = await aio.start_chain(conn, "solo", None)
    await until(lambda: len(woken) == 8 and not tasks)
    assert len(claims) == 1  # one claim ran, for the one unit the start published
    assert [row[0] for row in claims[0][1]] == [started.id]


async def test_redis_notifier_takes_a_client_object(cluster_ports: list[int]) -> None:
    prefix = unique_prefix()
    clients: list[Any] = [
        aioredis.Redis.from_url(REDIS_URL, decode_responses=True),  # a caller's settings are kept
        RedisCluster(host="127.0.0.1", port=cluster_ports[1]),
    ]
    for client in clients:
        notifier = RedisNotifier(client, prefix=prefix)
        assert notifier.cluster is isinstance(client, RedisCluster)
        got: list[NotifyEvent] = []
        try:
            sub = await notifier.subscribe(got.append)
            await notifier.publish_job_ready({"from-client": 1})
            await until(lambda: of(got, "job_ready") == ["from-client"])
            # the budget through the client (no listener left here: a lone
            # listener may claim without asking, queuert.notify._alone)
            await sub.close()
            assert await notifier.take_wake_hint(["from-client"]) is True
            assert await notifier.take_wake_hint(["from-client"]) is False
        finally:
            await notifier.close()
    with pytest.raises(TypeError, match="needs a URL or a redis.asyncio client"):
        RedisNotifier(42)  # type: ignore[arg-type]
