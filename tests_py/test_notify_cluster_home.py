"""Redis Cluster: the notifier keeps its messages off the cluster bus.

Classic PUBLISH reaches a subscriber on any node, but a message that crosses
the bus can wait for a delayed ACK (Redis 7.0 writes its outgoing bus links
without TCP_NODELAY: tens of ms). So the subscriber connects to the node
serving the prefix's slot, where the send script runs, and a batch with no
budget key (ids only) is sent to that node too. Checked as behaviour on a
cluster of our own: where the subscription lives (PUBSUB NUMSUB per node)
and which node ran the send script (its command stats); each for prefixes
spread over all three nodes, entered through another node."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from queuert.notify import NotifyEvent
from queuert.notify.redis import RedisNotifier

from notify_brokers import redis_cluster, unique_prefix


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    with redis_cluster() as ports:
        yield ports


def home_port(ports: list[int], prefix: str) -> int:
    """The node that serves ``{prefix}``, asked of the nodes themselves (the
    others answer MOVED)."""
    owners = []
    for port in ports:
        with redis.Redis(port=port) as r:
            try:
                r.exists(f"{{{prefix}}}:probe")
            except redis.exceptions.MovedError:
                continue
            owners.append(port)
    assert len(owners) == 1, owners
    return owners[0]


def prefixes_on_every_node(ports: list[int], per_node: int = 2) -> list[tuple[str, int]]:
    """(prefix, home port) pairs, ``per_node`` for each node."""
    found: dict[int, list[str]] = {p: [] for p in ports}
    while any(len(v) < per_node for v in found.values()):
        prefix = unique_prefix()
        home = home_port(ports, prefix)
        if len(found[home]) < per_node:
            found[home].append(prefix)
    return [(prefix, port) for port, names in found.items() for prefix in names]


def numsub(port: int, channel: str) -> int:
    with redis.Redis(port=port) as r:
        return int(dict(r.pubsub_numsub(channel))[channel.encode()])


def scripts_run(port: int) -> int:
    with redis.Redis(port=port) as r:
        stats = r.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("eval", "evalsha"))


async def until(check: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_cluster_subscriber_and_id_batches_stay_on_the_prefix_node(cluster_ports: list[int]) -> None:
    for prefix, home in prefixes_on_every_node(cluster_ports):
        entry = next(p for p in cluster_ports if p != home)  # the URL names another node
        notifier = RedisNotifier(f"redis://127.0.0.1:{entry}", cluster=True, prefix=prefix)
        events: list[NotifyEvent] = []
        try:
            await notifier.subscribe(events.append, kinds=("job_ready", "chain_completed"))
            channel = notifier.channels["job_ready"]
            where = {port: numsub(port, channel) for port in cluster_ports}
            assert where == {port: int(port == home) for port in cluster_ports}, (prefix, home, where)

            before = {port: scripts_run(port) for port in cluster_ports}
            await notifier.publish_chain_completed([f"chain-{prefix}"])  # no budget key to route by
            assert await notifier.flush()
            await until(lambda: [e.payload for e in events if e.kind == "chain_completed"] == [f"chain-{prefix}"])
            ran = {port: scripts_run(port) - before[port] > 0 for port in cluster_ports}
            # the send script ran at home only (twice on a node's first batch:
            # EVALSHA's NOSCRIPT counts as a call, then EVAL)
            assert ran == {port: port == home for port in cluster_ports}, (prefix, home, ran)

            await notifier.publish_job_ready(["t"])  # keyed: at home by the key's slot anyway
            await until(lambda: [e.payload for e in events if e.kind == "job_ready"] == ["t"])
        finally:
            await notifier.close()


async def test_cluster_producer_writes_to_the_prefix_node_and_follows_its_slot(cluster_ports: list[int]) -> None:
    """A Cluster producer's writer thread (replies off) connects to the node of
    the prefix's slot; when the slot moves it notices (a MOVED would go
    unseen on that connection), drops the connection and writes to the new
    node: no hint keeps going where it is not run."""
    prefix, home = prefixes_on_every_node(cluster_ports, 1)[0]
    entry = next(p for p in cluster_ports if p != home)
    target = next(p for p in cluster_ports if p not in (home, entry))
    publisher = RedisNotifier(f"redis://127.0.0.1:{entry}", cluster=True, prefix=prefix)
    taker = RedisNotifier(f"redis://127.0.0.1:{entry}", cluster=True, prefix=prefix)
    key = publisher.budget_key("t")
    try:
        await publisher.publish_job_ready({"t": 1})  # the I/O thread's path; the writer connects
        assert await publisher.flush()
        assert publisher._direct is not None
        await until(lambda: publisher._direct is not None and publisher._direct.connected)
        assert publisher._direct_home == ("127.0.0.1", home)
        written = publisher._direct.sent
        await publisher.publish_job_ready({"t": 1})
        assert await publisher.flush()
        assert publisher._direct.sent == written + 1  # the writer wrote it
        assert [await taker.take_wake_hint(["t"]) for _ in range(3)] == [True, True, False]

        # move the (now empty) slot to the third node
        with redis.Redis(port=home) as r:
            slot = int(r.execute_command("CLUSTER", "KEYSLOT", key))
            assert int(r.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)) == 0
        with redis.Redis(port=target) as r:
            target_id = r.execute_command("CLUSTER", "MYID")
            target_id = target_id.decode() if isinstance(target_id, bytes) else target_id
        for port in [target, home, entry]:
            with redis.Redis(port=port) as r:
                r.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)

        # hints written to the old node are not run there (MOVED, unseen);
        # within a few checks the writer is on the new node and they are
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while True:
            await publisher.publish_job_ready({"t": 1})
            assert await publisher.flush()
            with redis.Redis(port=target) as r:
                if r.get(key) is not None:
                    break
            assert loop.time() < deadline, "the writer never followed the slot"
            await asyncio.sleep(0.2)
        assert publisher._direct_home == ("127.0.0.1", target)
        assert await taker.take_wake_hint(["t"]) is True
    finally:
        await publisher.close()
        await taker.close()
