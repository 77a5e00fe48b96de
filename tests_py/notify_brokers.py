"""Real brokers for the notify tests: the shared Redis / NATS, and servers a
test starts itself on spare loopback ports (fault tests, a Redis Cluster,
PgBouncer). Never mocks; never touches the shared servers' data or config
beyond the test's own prefix."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REDIS_URL = os.environ.get("QUEUERT_TEST_REDIS", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("QUEUERT_TEST_NATS", "nats://127.0.0.1:4222")


async def budget_answer(notifier: Any, type_names: list[str], timeout: float = 10.0) -> bool:
    """What the wake budget answered one take. A lone listener claims at once
    and takes its unit in the background (queuert.notify._alone), so a plain
    ``take_wake_hint`` may return before the unit is gone; this waits for it."""
    said: list[bool] = []  # settled() runs on the notifier's I/O thread
    answer = await notifier.take_wake_hint_or_defer(type_names, said.append)
    deadline = time.monotonic() + timeout
    while answer is None and not said:
        assert time.monotonic() < deadline, "the background take never settled"
        await asyncio.sleep(0.005)
    return bool(said[0]) if answer is None else bool(answer)


def unique_prefix() -> str:
    return "t" + uuid.uuid4().hex[:16]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair(offset: int = 10000) -> int:
    """A free port ``p`` <= 55535 whose ``p + offset`` is free too (a
    Redis Cluster node listens on both)."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
    raise AssertionError("no free port pair")


def wait_port(
    port: int, up: bool = True, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up and proc is not None and proc.poll() is not None:
            break  # exited: it will not open the port
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise AssertionError(f"port {port} did not become {'open' if up else 'closed'}")


class Server:
    """A server process we started (and only we stop)."""

    def __init__(self, args: list[str], port: int, workdir: Path, log: str, user: str | None = None) -> None:
        self.args = args
        self.port = port
        self.workdir = workdir
        self.log_path = workdir / log
        self.user = user
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.args, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        try:
            wait_port(self.port, proc=self.proc)
        except AssertionError:
            self.stop()
            raise AssertionError(f"{self.args[0]} did not start: {self.log_path.read_text()[-2000:]}") from None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        wait_port(self.port, up=False)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def workdir(name: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"queuert-{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def own_redis() -> Iterator[Server]:
    """A redis-server of our own on a spare port (no persistence)."""
    with workdir("redis") as d:
        port = free_port()
        server = Server(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
            port,
            d,
            "redis.log",
        )
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def own_nats(jetstream: bool = True) -> Iterator[Server]:
    """A nats-server of our own on a spare port, JetStream in a temp dir."""
    with workdir("nats") as d:
        port = free_port()
        args = ["nats-server", "-a", "127.0.0.1", "-p", str(port)]
        if jetstream:
            args += ["-js", "-sd", str(d / "js")]
        server = Server(args, port, d, "nats.log")
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def redis_cluster(nodes: int = 3) -> Iterator[list[int]]:
    """``nodes`` redis-server processes with cluster mode on, joined into one
    cluster (no replicas); yields their ports."""
    with workdir("cluster") as d:
        servers: list[Server] = []
        try:
            for i in range(nodes):
                port = free_port_pair()
                node_dir = d / str(i)
                node_dir.mkdir()
                server = Server(
                    [
                        "redis-server", "--bind", "127.0.0.1", "--port", str(port),
                        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no",
                    ],
                    port,
                    node_dir,
                    "redis.log",
                )
                server.start()
                servers.append(server)
            ports = [s.port for s in servers]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            deadline = time.monotonic() + 30
            while True:  # every node must see the cluster as ok
                states = [
                    subprocess.run(
                        ["redis-cli", "-p", str(p), "cluster", "info"], capture_output=True, text=True, timeout=10
                    ).stdout
                    for p in ports
                ]
                if all("cluster_state:ok" in s for s in states):
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"cluster did not become ok: {states}")
                time.sleep(0.1)
            yield ports
        finally:
            for server in servers:
                server.stop()


@contextlib.contextmanager
def own_pgbouncer(pg_host: str, pg_port: int, user: str = "postgres") -> Iterator[Server]:
    """A pgbouncer of our own in transaction pooling mode on a spare port,
    in front of the given PostgreSQL (any database, logged in as ``user``)."""
    with workdir("pgbouncer") as d:
        os.chmod(d, 0o777)  # pgbouncer drops root for -u postgres
        port = free_port()
        ini = d / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={pg_host} port={pg_port} user={user}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {port}\n"
            "unix_socket_dir =\n"
            "auth_type = any\n"
            "pool_mode = transaction\n"
            "max_client_conn = 200\n"
            "default_pool_size = 10\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {d / 'pgbouncer.log'}\n"
            f"pidfile = {d / 'pgbouncer.pid'}\n"
        )
        os.chmod(ini, 0o644)
        args = ["pgbouncer", str(ini)]
        if os.geteuid() == 0:
            args = ["pgbouncer", "-u", "postgres", str(ini)]
        server = Server(args, port, d, "stdout.log")
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def broker_notifiers(kind: str, cluster_ports: Callable[[], list[int]] | None = None) -> Iterator[Callable[..., Any]]:
    """A factory of broker notifiers of one kind ("redis", "redis-cluster",
    "nats") sharing a fresh prefix; each is closed afterwards, and the NATS
    wake-hint bucket of the prefix dropped. Cluster notifiers connect to the
    nodes of ``cluster_ports()`` in turn. ``factory(**options)`` passes
    options (``hint_timeout``, ``send_timeout``) to the notifier."""
    from queuert.notify.nats import NatsNotifier
    from queuert.notify.redis import RedisNotifier

    prefix = unique_prefix()
    made: list[Any] = []

    def factory(**options: Any) -> Any:
        options.setdefault("prefix", prefix)
        notifier: Any
        if kind == "redis":
            notifier = RedisNotifier(REDIS_URL, **options)
        elif kind == "redis-cluster":
            assert cluster_ports is not None
            ports = cluster_ports()
            notifier = RedisNotifier(f"redis://127.0.0.1:{ports[len(made) % len(ports)]}", cluster=True, **options)
        else:
            notifier = NatsNotifier(NATS_URL, **options)
        made.append(notifier)
        return notifier

    try:
        yield factory
    finally:
        for notifier in made:
            asyncio.run(notifier.close())
        if kind == "nats":
            asyncio.run(drop_bucket(f"{prefix}-wake-hints"))


async def drop_bucket(bucket: str) -> None:
    """Delete a test's wake-hint KV bucket from the shared NATS (nothing if
    it made none)."""
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_key_value(bucket)
    except Exception:  # never created
        pass
    await nc.close()
