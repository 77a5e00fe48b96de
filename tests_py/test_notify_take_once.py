"""Redis: a wake-budget take that times out spends one unit, never more.
redis-py's cluster client sent the take script again after a timeout, and a
stalled node runs everything it had received once it resumes: two units
for one take (main's code fails the cluster test). A standalone client
with redis-py's default retries (ten) spent one unit on main already; its
test keeps it so.
Checked on a cluster and a redis-server of our own, the budgets' server
stopped (SIGSTOP) for longer than the socket timeout of a client passed
in."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from queuert.notify.redis import RedisNotifier

from notify_brokers import budget_answer, own_redis, redis_cluster, unique_prefix
from test_notify_cluster_home import home_port


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    with redis_cluster() as ports:
        yield ports


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


async def test_a_take_that_times_out_on_a_cluster_spends_one_unit(cluster_ports: list[int]) -> None:
    prefix = unique_prefix()
    home = home_port(cluster_ports, prefix)
    entry = next(p for p in cluster_ports if p != home)
    # a client of the caller's, whose socket timeout fires before hint_timeout
    client = RedisCluster(host="127.0.0.1", port=entry, socket_timeout=0.3)
    worker = RedisNotifier(client, prefix=prefix, hint_timeout=10.0)
    publisher = RedisNotifier(f"redis://127.0.0.1:{entry}", cluster=True, prefix=prefix)
    await _one_unit_for_a_stalled_take(worker, publisher, home)


async def test_a_take_that_times_out_on_a_standalone_redis_spends_one_unit() -> None:
    with own_redis() as server:
        prefix, url = unique_prefix(), f"redis://127.0.0.1:{server.port}/0"
        client = aioredis.Redis.from_url(url, socket_timeout=0.3)  # redis-py's default retries
        worker = RedisNotifier(client, prefix=prefix, hint_timeout=10.0)
        publisher = RedisNotifier(url, prefix=prefix)
        await _one_unit_for_a_stalled_take(worker, publisher, server.port)


async def _one_unit_for_a_stalled_take(worker: RedisNotifier, publisher: RedisNotifier, port: int) -> None:
    """Three units; a take to connect; the server at ``port`` stopped for
    1.5 s around a second take; then exactly one unit must be left."""
    with redis.Redis(port=port) as r:
        pid = int(r.info("server")["process_id"])
    try:
        await publisher.publish_job_ready({"t": 3})
        assert await publisher.flush()
        assert await worker.take_wake_hint(["t"]) is True  # connected; two units left
        os.kill(pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 10
            while not _stopped(pid):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            asyncio.get_running_loop().call_later(1.5, os.kill, pid, signal.SIGCONT)
            # the node does not answer within the socket timeout: claim (fail open)
            assert await worker.take_wake_hint(["t"]) is True
            while _stopped(pid):
                await asyncio.sleep(0.05)
        finally:
            os.kill(pid, signal.SIGCONT)
        await asyncio.sleep(0.3)  # the resumed node runs what it had received
        # the stalled take ran once: one unit left of the two
        assert [await budget_answer(publisher, ["t"]) for _ in range(2)] == [True, False]
    finally:
        await worker.close()
        await publisher.close()
