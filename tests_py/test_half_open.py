"""A half-open LISTEN connection: the network silently stops delivering.

The worker's LISTEN connection goes through a small TCP proxy in this test
(``PostgresNotifier(proxy_dsn)``; the worker's other connections go straight
to PostgreSQL). After start-up the proxy stops forwarding on the connections
it already carries: both sockets stay open, bytes are read and dropped, no
error, no FIN, no RST. A notification sent then vanishes.

* The worker still processes each new job within its poll interval
  (``poll_interval`` + slack): notifications are hints, polling guarantees
  progress.
* With a short ``health_interval`` the notifier notices the silence (its
  health query gets no answer), drops the connection, connects again (new
  connections through the proxy are forwarded) and notifications flow again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import queuert
from queuert.notify.postgres import PostgresNotifier

from worker_helpers import asleep, eventually


class BlackholeProxy:
    """TCP proxy to PostgreSQL; :meth:`go_silent` turns the connections it
    carries at that moment into half-open ones (reads and drops both ways)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.listen_port = 0
        self.accepted = 0
        self.dropped = 0
        self._silent: list[dict[str, bool]] = []
        self._server: asyncio.AbstractServer | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.listen_port = self._server.sockets[0].getsockname()[1]

    def go_silent(self) -> None:
        for state in self._silent:
            state["silent"] = True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self._writers += [writer, up_writer]
        state = {"silent": False}
        self._silent.append(state)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    if state["silent"]:
                        self.dropped += len(data)
                        continue
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            if not state["silent"]:
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass  # closed by the test: a clean end, not an error

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def proxy(dsn: str) -> AsyncIterator[BlackholeProxy]:
    params = conninfo_to_dict(dsn)
    p = BlackholeProxy(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    await p.start()
    yield p
    await p.close()


def proxied(dsn: str, proxy: BlackholeProxy) -> str:
    params = conninfo_to_dict(dsn)
    params.update(host="127.0.0.1", port=str(proxy.listen_port))
    return make_conninfo(**params)  # type: ignore[arg-type]


async def start_job(dsn: str, n: int) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as c:
        await c.execute("SELECT queuert.start_chain(type_name => 'half-open', input => %s::jsonb)", (str(n),))
        await c.commit()


async def wait_for(pred: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.02)
    return bool(pred())


def make_worker(dsn: str, notifier: PostgresNotifier, poll_interval: float) -> tuple[queuert.Worker, dict[int, float]]:
    done: dict[int, float] = {}
    worker = queuert.Worker(dsn, notifier=notifier, poll_interval=poll_interval, concurrency=2, reap_interval=60)

    @worker.handler("half-open")
    async def handle(job: queuert.JobContext[Any]) -> None:
        done[int(job.input)] = time.monotonic()

    return worker, done


async def test_worker_with_half_open_listen_still_processes_jobs_within_poll_interval(
    dsn: str, proxy: BlackholeProxy
) -> None:
    poll = 1.0
    # the notification is dropped and the health check is 300 s away, so any
    # pickup at all is the poll's; the slack only absorbs a loaded machine
    slack = 9.0
    notifier = PostgresNotifier(proxied(dsn, proxy), health_interval=300)
    worker, done = make_worker(dsn, notifier, poll)
    task = asyncio.create_task(worker.run_async())
    try:
        await worker.wait_started()
        assert await wait_for(lambda: notifier.listen_pid is not None, 10)
        assert proxy.accepted == 1  # the LISTEN connection, and only it, goes through the proxy
        await start_job(dsn, 0)
        assert await wait_for(lambda: 0 in done, poll + slack)

        proxy.go_silent()
        for n in range(1, 4):
            created = time.monotonic()
            dropped_before = proxy.dropped
            await start_job(dsn, n)
            assert await wait_for(lambda: n in done, poll + slack), f"job {n} not processed"
            assert done[n] - created <= poll + slack
            # its notification went into the hole: polling found the job
            assert await wait_for(lambda: proxy.dropped > dropped_before, 5)
        assert notifier.connections == 1  # the notifier never saw an error
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def test_notifier_reconnects_after_its_connection_goes_half_open(dsn: str, proxy: BlackholeProxy) -> None:
    # a long poll interval: a quick pickup after the outage must come from a
    # notification, i.e. from a new LISTEN connection
    notifier = PostgresNotifier(proxied(dsn, proxy), health_interval=0.5, health_timeout=1.0)
    worker, done = make_worker(dsn, notifier, poll_interval=300)
    task = asyncio.create_task(worker.run_async())
    try:
        await worker.wait_started()
        assert await wait_for(lambda: notifier.connections == 1, 10)
        await start_job(dsn, 0)
        assert await wait_for(lambda: 0 in done, 10)

        proxy.go_silent()
        assert await wait_for(lambda: notifier.connections == 2, 15), "no reconnection after the silence"
        assert proxy.accepted >= 2  # (psycopg's cancel request of the health query is one more)
        await eventually(lambda: asleep(worker))  # settled into its long poll sleep
        await start_job(dsn, 1)
        assert await wait_for(lambda: 1 in done, 10)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
