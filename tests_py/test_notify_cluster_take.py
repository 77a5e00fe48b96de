"""Redis Cluster: a wake-budget take that times out spends one unit, never
two. redis-py's cluster client sends a command again after a timeout; a
stalled node runs everything it had received once it resumes, so a retried
take script ran twice. Checked on a cluster of our own, its budgets' node
stopped (SIGSTOP) for longer than the client's socket timeout."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from queuert.notify.redis import RedisNotifier

from notify_brokers import budget_answer, redis_cluster, unique_prefix
from test_notify_cluster_home import home_port


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    with redis_cluster() as ports:
        yield ports


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


async def test_a_take_that_times_out_spends_one_unit(cluster_ports: list[int]) -> None:
    prefix = unique_prefix()
    home = home_port(cluster_ports, prefix)
    entry = next(p for p in cluster_ports if p != home)
    # a client of the caller's, whose socket timeout fires before hint_timeout
    client = RedisCluster(host="127.0.0.1", port=entry, socket_timeout=0.3)
    worker = RedisNotifier(client, prefix=prefix, hint_timeout=10.0)
    publisher = RedisNotifier(f"redis://127.0.0.1:{entry}", cluster=True, prefix=prefix)
    with redis.Redis(port=home) as r:
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
