"""``notifier_from_url`` and ``queuert worker --notify``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

import queuert
from queuert import aio
from queuert.cli import cli
from queuert.job import JobContext
from queuert.notify import (
    NatsNotifier,
    NullNotifier,
    PostgresNotifier,
    RedisNotifier,
    notifier_from_url,
)

from notify_brokers import REDIS_URL, unique_prefix
from test_worker import DB, db, fast, running  # noqa: F401 - fixture


def test_notifier_from_url_picks_the_adapter() -> None:
    # also exported from the package root, with the notifier it may return
    assert queuert.notifier_from_url is notifier_from_url and queuert.NullNotifier is NullNotifier
    assert {"notifier_from_url", "NullNotifier"} <= set(queuert.__all__)
    assert isinstance(notifier_from_url("none"), NullNotifier)
    pg = notifier_from_url("postgres", conninfo="dbname=app", schema="billing")
    assert isinstance(pg, PostgresNotifier) and pg.conninfo == "dbname=app" and pg.schema == "billing"
    assert isinstance(notifier_from_url("postgresql://u@h/app"), PostgresNotifier)
    with pytest.raises(ValueError, match="needs the database conninfo"):
        notifier_from_url("postgres")

    r = notifier_from_url("redis://127.0.0.1:6379/0", schema="billing")
    assert isinstance(r, RedisNotifier) and r.prefix == "billing" and not r.cluster
    assert r.url == "redis://127.0.0.1:6379/0"
    r = notifier_from_url("rediss://h:6380/2?prefix=app-one&ssl_cert_reqs=none")
    assert isinstance(r, RedisNotifier) and r.prefix == "app-one" and r.url == "rediss://h:6380/2?ssl_cert_reqs=none"
    c = notifier_from_url("redis+cluster://10.0.0.5:7000")
    assert isinstance(c, RedisNotifier) and c.cluster and c.url == "redis://10.0.0.5:7000" and c.prefix == "queuert"

    n = notifier_from_url("nats://a:4222,nats://b:4222?prefix=p1")
    assert isinstance(n, NatsNotifier) and n.servers == ["nats://a:4222", "nats://b:4222"] and n.prefix == "p1"
    n = notifier_from_url("nats://a:4222", prefix="given")
    assert isinstance(n, NatsNotifier) and n.servers == "nats://a:4222" and n.prefix == "given"

    for bad in ("bogus", "http://x", "redis://h/0?prefix=has space"):
        with pytest.raises(ValueError):
            notifier_from_url(bad)


def test_build_worker_takes_a_notifier_or_its_url() -> None:
    from queuert.worker import build_worker

    redis = RedisNotifier(REDIS_URL, prefix=unique_prefix())
    given = build_worker(queuert.Worker(), dsn="dbname=app", notifier=redis)
    assert given.notifier is redis
    named = build_worker(queuert.Worker(schema="billing"), dsn="dbname=app", notifier="postgres")
    assert isinstance(named.notifier, PostgresNotifier) and named.notifier.conninfo == "dbname=app"
    assert named.notifier.schema == "billing"
    kept = queuert.Worker(notifier=NullNotifier())
    assert build_worker(kept, dsn="dbname=app").notifier is kept.notifier
    with pytest.raises(ValueError, match="unknown notify setting"):
        build_worker(queuert.Worker(), dsn="dbname=app", notifier="mqtt://x")


def test_cli_rejects_an_unknown_notify_setting(tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "noop_app.py").write_text("import queuert\nworker = queuert.Worker()\n"
                                          "worker.handler('x', lambda job: None)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(cli, ["worker", "noop_app:worker", "--dsn", dsn, "--notify", "mqtt://x"])
    assert result.exit_code == 2
    assert "--notify" in result.output and "unknown notify setting" in result.output


APP = textwrap.dedent(
    """
    import queuert

    worker = queuert.Worker(poll_interval=60, concurrency=2)

    @worker.handler("ping")
    async def ping(job):
        return job.input
    """
)


@pytest.mark.parametrize("how", ["cli", "run_worker_cli"])
def test_cli_worker_wakes_through_redis(tmp_path: Path, dsn: str, how: str) -> None:
    """``queuert worker --notify URL``, and ``run_worker_cli(..., notifier=...)``
    with a notifier object (what the CLI runs, for a program of one's own)."""
    (tmp_path / "app.py").write_text(APP)
    prefix = unique_prefix()
    log = tmp_path / "worker.log"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    if how == "cli":
        argv = [sys.executable, "-m", "queuert.cli", "worker", "app:worker", "--dsn", dsn,
                "--notify", f"{REDIS_URL}?prefix={prefix}"]
    else:
        argv = [sys.executable, "-c", textwrap.dedent(
            f"""
            import queuert
            from queuert.notify.redis import RedisNotifier

            queuert.run_worker_cli("app:worker", dsn={dsn!r},
                                   notifier=RedisNotifier({REDIS_URL!r}, prefix={prefix!r}))
            """
        )]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while b"starting" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        producer = RedisNotifier(REDIS_URL, prefix=prefix)
        with psycopg.connect(dsn) as conn:
            with queuert.transaction_hooks(producer):
                with conn.transaction():
                    started = queuert.start_chain(conn, "ping", "pong")
            # the worker polls once a minute: this completes through Redis
            done = queuert.wait_for_chain(conn, started.chain_id, timeout=30)
        assert done.output == "pong"
        asyncio.run(producer.close())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0, log.read_text()


async def test_poll_only_worker_with_the_null_notifier(dsn: str, db: DB) -> None:
    worker = fast(dsn, notifier=NullNotifier(), poll_interval=0.2)
    seen: list[Any] = []

    @worker.handler("polled")
    async def polled(job: JobContext[int]) -> int:
        seen.append(job.input)
        return job.input

    async with running(worker):
        chains = [(await aio.start_chain(db.conn, "polled", i)).chain_id for i in range(3)]
        for c in chains:
            await aio.wait_for_chain(db.conn, c, timeout=30)
    assert sorted(seen) == [0, 1, 2]
