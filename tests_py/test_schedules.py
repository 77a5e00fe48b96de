"""Schedules from the worker side: ScheduleTicker services (one per worker)
racing on real PostgreSQL start exactly one chain per tick; the client and
CLI calls around them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

import queuert
from queuert import aio
from queuert._worker.schedule_ticker import ScheduleTicker
from queuert.cli import cli


@pytest.fixture
async def admin(dsn: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


def ticker(dsn: str, **kw: Any) -> ScheduleTicker:
    return ScheduleTicker(lambda: psycopg.AsyncConnection.connect(dsn), **kw)


async def rounds_past(tickers: list[ScheduleTicker], marks: list[int], timeout: float = 30) -> None:
    """Until each ticker has finished at least its mark of rounds."""
    deadline = time.monotonic() + timeout
    while not all(t.rounds >= m for t, m in zip(tickers, marks)):
        assert time.monotonic() < deadline, f"rounds {[t.rounds for t in tickers]}, waiting for {marks}"
        await asyncio.sleep(0.01)


async def make_due(conn: psycopg.AsyncConnection[Any], name: str, minutes_ago: int) -> None:
    """The schedule's next tick, moved into the past (as if time had passed)."""
    await conn.execute(
        "UPDATE queuert.schedule SET next_tick_at = date_trunc('minute', now()) - make_interval(mins => %s)"
        " WHERE name = %s",
        (minutes_ago, name),
    )


async def chains_of(conn: psycopg.AsyncConnection[Any], type_name: str) -> list[tuple[str, int]]:
    cur = await conn.execute(
        "SELECT dedup_key, count(*) FROM queuert.job WHERE type_name = %s AND chain_index = 0"
        " GROUP BY 1 ORDER BY 1",
        (type_name,),
    )
    return [(str(k), int(n)) for k, n in await cur.fetchall()]


async def test_racing_tickers_start_one_chain_per_tick(dsn: str, admin: psycopg.AsyncConnection[Any]) -> None:
    await aio.set_schedule(admin, "every-minute", "* * * * *", "tick", {"n": 1})
    tickers = [ticker(dsn, type_names=["tick"]) for _ in range(6)]
    try:
        for round_ in range(1, 16):
            await make_due(admin, "every-minute", 100 - round_)
            fired = await asyncio.gather(*(t.tick_once() for t in tickers))
            assert sum(len(f) for f in fired) == 1, fired  # one ticker won, the others skipped the row
    finally:
        for t in tickers:
            await t.stop()
    chains = await chains_of(admin, "tick")
    assert len(chains) == 15 and all(n == 1 for _k, n in chains)
    assert sum(t.fired for t in tickers) == 15


async def test_tickers_running_in_the_background_fire_each_tick_once(
    dsn: str, admin: psycopg.AsyncConnection[Any]
) -> None:
    await aio.set_schedule(admin, "often", "*/5 * * * *", "bg")
    await aio.set_schedule(admin, "elsewhere", "*/5 * * * *", "not-mine")
    tickers = [ticker(dsn, type_names=["bg"], max_sleep=0.05) for _ in range(3)]
    for t in tickers:
        t.start()
    try:
        for minutes_ago in (30, 20, 10):
            await make_due(admin, "often", minutes_ago)
            await make_due(admin, "elsewhere", minutes_ago)
            deadline = time.monotonic() + 30
            while len(await chains_of(admin, "bg")) < (4 - minutes_ago // 10):
                assert time.monotonic() < deadline, "the tickers never fired"
                await asyncio.sleep(0.02)
            # every ticker finishes two more rounds, so one of them began
            # after the tick's chain was seen: none fires the tick again
            marks = [t.rounds for t in tickers]
            await rounds_past(tickers, [m + 2 for m in marks])
    finally:
        for t in tickers:
            await t.stop()
    chains = await chains_of(admin, "bg")
    assert [n for _k, n in chains] == [1, 1, 1]
    assert await chains_of(admin, "not-mine") == [], "a ticker fires only its worker's types"
    # stop() closed the tickers' connections (a backend leaves the view a moment after)
    deadline = time.monotonic() + 10
    while (await (await admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    )).fetchone()) != (1,):
        assert time.monotonic() < deadline, "a ticker's connection is still open"
        await asyncio.sleep(0.02)


async def test_ticker_survives_a_lost_connection(dsn: str, admin: psycopg.AsyncConnection[Any]) -> None:
    await aio.set_schedule(admin, "s", "* * * * *", "lost")
    t = ticker(dsn, type_names=["lost"], max_sleep=0.05, reconnect_max=0.1)
    t.start()
    try:
        await rounds_past([t], [1])  # connected: a round went through
        cur = await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert await cur.fetchall() == [(True,)], "the ticker's connection was not there to lose"
        await make_due(admin, "s", 5)
        deadline = time.monotonic() + 30
        while not await chains_of(admin, "lost"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    finally:
        await t.stop()
    assert [n for _k, n in await chains_of(admin, "lost")] == [1]


def test_client_and_cli_round_trip(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        job = queuert.JobType("report", input=int)
        s = queuert.set_schedule(conn, "nightly", "0 3 * * *", job, 7, timezone="Europe/Berlin")
        assert (s.type_name, s.input, s.timezone, s.last_tick_at) == ("report", 7, "Europe/Berlin", None)
        with pytest.raises(queuert.PayloadValidationError):
            queuert.set_schedule(conn, "nightly", "0 3 * * *", job, "seven")
        with pytest.raises(queuert.InvalidArgumentError, match="time zone"):
            queuert.set_schedule(conn, "x", "0 3 * * *", "report", timezone="Nowhere/Else")
        assert [x.name for x in queuert.list_schedules(conn)] == ["nightly"]
    runner = CliRunner()
    out = runner.invoke(cli, ["schedules", "set", "hourly", "@hourly", "t", "--input", '{"a": 1}', "--dsn", dsn])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["schedules", "list", "--dsn", dsn])
    assert out.exit_code == 0 and "hourly" in out.output and "Europe/Berlin" in out.output
    out = runner.invoke(cli, ["schedules", "set", "bad", "61 * * * *", "t", "--dsn", dsn])
    assert out.exit_code == 1 and "minute field" in out.output
    assert runner.invoke(cli, ["schedules", "delete", "hourly", "--dsn", dsn]).exit_code == 0
    out = runner.invoke(cli, ["schedules", "delete", "hourly", "--dsn", dsn])
    assert out.exit_code == 1 and "no schedule named" in out.output


async def test_workers_fire_their_schedules_once_per_tick_and_run_the_chains(
    dsn: str, admin: psycopg.AsyncConnection[Any]
) -> None:
    """Three workers (schedule tickers on by default) started together on a
    due tick, three times: one chain per tick, each run once."""
    await aio.set_schedule(admin, "reports", "*/10 * * * *", "scheduled-report", {"k": 1})
    ran: list[Any] = []
    for round_ in range(1, 4):
        await make_due(admin, "reports", 100 - 10 * round_)
        workers = [queuert.Worker(dsn, concurrency=2, poll_interval=0.2, grace_period=5) for _ in range(3)]
        for w in workers:
            w.handler("scheduled-report", lambda job: ran.append(job.input))
        tasks = [asyncio.create_task(w.run_async()) for w in workers]
        try:
            deadline = time.monotonic() + 30
            while len(ran) < round_:
                assert time.monotonic() < deadline, "the schedule never ran"
                await asyncio.sleep(0.02)
            # every worker's ticker has had its turn at the tick: its first
            # round began after make_due, in a worker started after it
            for w in workers:
                await w.wait_started(30)  # its ticker was started before
                assert w._run is not None
                (t,) = [s for s in w._run.loopers if isinstance(s, ScheduleTicker)]
                await rounds_past([t], [1])
        finally:
            for w in workers:
                w.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert ran == [{"k": 1}] * 3
    assert [n for _k, n in await chains_of(admin, "scheduled-report")] == [1, 1, 1]
