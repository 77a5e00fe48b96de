"""start_chain's common call on a psycopg connection (queuert._plain_start):
a type name or a JobType and an input, every option at its default, no hooks
block, telemetry off. It skips the general path (the operation, its query
and row maker), so these tests hold it to that path's behaviour: the same
row, the same refusals before anything is sent, engine errors translated,
an autocommit call re-run after a conflict, and every option (which leaves
the fast path) still arriving. Sync and async side by side."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

import queuert
from queuert import (
    InvalidArgumentError,
    InvalidSchemaNameError,
    JobType,
    PayloadValidationError,
    StartedChain,
    aio,
)
from queuert import _operations
from queuert.hooks import transaction_hooks
from queuert.notify.null import NullNotifier

Conn = psycopg.Connection[Any]
AConn = psycopg.AsyncConnection[Any]


@dataclass
class Signup:
    user_id: int


signup = JobType("signup", input=Signup, output=None)


@pytest.fixture
def general_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The type names the general path (_operations.start_chain) was asked
    to start, so a test can tell which path a call took."""
    calls: list[str] = []
    general = _operations.start_chain

    def spy(schema: str, job_type: Any, input: Any, **options: Any) -> Any:
        calls.append(job_type if isinstance(job_type, str) else job_type.name)
        return general(schema, job_type, input, **options)

    monkeypatch.setattr(_operations, "start_chain", spy)
    yield calls


def both(
    conn: Conn, aconn: AConn, loop: asyncio.AbstractEventLoop
) -> list[Callable[..., StartedChain]]:
    """start_chain on the sync connection and aio.start_chain on the async one."""

    def sync(*args: Any, **kwargs: Any) -> StartedChain:
        return queuert.start_chain(conn, *args, **kwargs)

    def run_async(*args: Any, **kwargs: Any) -> StartedChain:
        return loop.run_until_complete(aio.start_chain(aconn, *args, **kwargs))

    return [sync, run_async]


@pytest.fixture
def starts(dsn: str) -> Iterator[list[Callable[..., StartedChain]]]:
    loop = asyncio.new_event_loop()
    conn = psycopg.connect(dsn, autocommit=True)
    aconn = loop.run_until_complete(psycopg.AsyncConnection.connect(dsn, autocommit=True))
    try:
        yield both(conn, aconn, loop)
    finally:
        conn.close()
        loop.run_until_complete(aconn.close())
        loop.close()


def stored(dsn: str, job_id: uuid.UUID) -> tuple[Any, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT id, chain_id, type_name, status::text, scheduled_at, created_at, input,"
            " priority, dedup_key, trace_context FROM queuert.job WHERE id = %s",
            (job_id,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM queuert.job").fetchone()
    assert row is not None
    return int(row[0])


def test_the_common_start_skips_the_general_path_and_returns_the_stored_row(
    dsn: str, starts: list[Callable[..., StartedChain]], general_calls: list[str]
) -> None:
    for start in starts:
        for job_type, given in (("by-name", {"n": 1}), (signup, {"user_id": "2"}), ("no-input", None)):
            started = start(job_type, given)
            row = stored(dsn, started.id)
            assert (started.id, started.chain_id, started.type_name, started.status) == row[:4]
            assert (started.scheduled_at, started.created_at, started.deduplicated) == (row[4], row[5], False)
            assert started.scheduled_at.tzinfo is not None
        assert stored(dsn, start(signup, Signup(3)).id)[6] == {"user_id": 3}  # validated, dumped
    assert general_calls == []


def test_the_common_start_reads_its_timestamps_in_the_sessions_time_zone(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'America/New_York'")
        started = queuert.start_chain(conn, "tz", None)
        row = conn.execute("SELECT scheduled_at, created_at FROM queuert.job").fetchone()
    assert row is not None
    assert (started.scheduled_at, started.created_at) == row
    assert str(started.created_at.tzinfo) == str(row[1].tzinfo) == "America/New_York"


LATE_START_CHAIN = """
CREATE SCHEMA late;
-- start_chain with the engine's signature whose jobs are due a minute after
-- they are created, and refused with QU006 for the type 'refused'
CREATE FUNCTION late.start_chain(
    type_name text, input jsonb DEFAULT NULL, id uuid DEFAULT NULL,
    schedule_at timestamptz DEFAULT NULL, schedule_after interval DEFAULT NULL,
    blockers uuid[] DEFAULT NULL, dedup_key text DEFAULT NULL,
    dedup_scope text DEFAULT 'incomplete', dedup_window interval DEFAULT NULL,
    priority int DEFAULT 0, trace_context text DEFAULT NULL
) RETURNS SETOF queuert.start_chain_result LANGUAGE plpgsql AS $$
BEGIN
    IF type_name = 'refused' THEN
        RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'QU006';
    END IF;
    RETURN QUERY SELECT * FROM queuert.start_chain(
        type_name => type_name, input => input, schedule_after => interval '1 minute');
END $$;
"""


def test_a_scheduled_at_apart_from_created_at_is_read_too_and_engine_errors_are_translated(
    dsn: str, starts: list[Callable[..., StartedChain]], general_calls: list[str]
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(LATE_START_CHAIN)
    for start in starts:
        started = start("late", {"n": 1}, schema="late")
        assert started.scheduled_at - started.created_at == timedelta(minutes=1)
        assert (started.scheduled_at, started.created_at) == stored(dsn, started.id)[4:6]
        with pytest.raises(InvalidArgumentError, match="refused by the test") as info:
            start("refused", None, schema="late")
        assert info.value.sqlstate == "QU006"
        assert isinstance(info.value.__cause__, psycopg.Error)
    assert general_calls == []


def refusals() -> list[tuple[dict[str, Any], type[Exception]]]:
    return [
        ({"schema": "Bad-Name"}, InvalidSchemaNameError),
        ({"schema": ""}, InvalidSchemaNameError),
        ({"schema": None}, InvalidSchemaNameError),
        ({"schema": ["queuert"]}, InvalidSchemaNameError),
        ({"job_type": ""}, InvalidArgumentError),
        ({"job_type": "x" * 256}, InvalidArgumentError),
        ({"job_type": 5}, InvalidArgumentError),
        ({"job_type": signup, "input": {"user_id": "not a number"}}, PayloadValidationError),
        ({"job_type": signup, "input": None}, PayloadValidationError),
        ({"input": {"not": object()}}, InvalidArgumentError),
    ]


@pytest.mark.parametrize(("bad", "error"), refusals())
def test_the_common_start_refuses_what_the_general_path_refuses_before_sending(
    dsn: str,
    starts: list[Callable[..., StartedChain]],
    bad: dict[str, Any],
    error: type[Exception],
) -> None:
    args: dict[str, Any] = {"job_type": "fine", "input": {"n": 1}, "schema": "queuert", **bad}
    options: dict[str, Any] = dict(
        id=None, schedule_at=None, schedule_after=None, blockers=None, dedup_key=None,
        dedup_scope="incomplete", dedup_window=None, priority=0, trace_context=None,
    )
    with pytest.raises(error) as general:  # the general path, building its call
        _operations.start_chain(args["schema"], args["job_type"], args["input"], **options)
    for start in starts:
        with pytest.raises(error) as plain:
            start(args["job_type"], args["input"], schema=args["schema"])
        assert type(plain.value) is type(general.value)
        assert str(plain.value) == str(general.value)
    assert count(dsn) == 0


OPTIONS: list[tuple[str, Any, int]] = [
    # (option, value, index of the stored column that shows it; -1: the id)
    ("id", uuid.UUID(int=42), -1),
    ("schedule_at", datetime(2100, 1, 1, tzinfo=timezone.utc), 4),
    ("schedule_after", timedelta(hours=1), 4),
    ("dedup_key", "the-key", 8),
    ("priority", 7, 7),
    ("trace_context", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", 9),
]


@pytest.mark.parametrize(("option", "value", "column"), OPTIONS, ids=[o[0] for o in OPTIONS])
def test_each_option_leaves_the_common_start_and_reaches_the_sql(
    dsn: str,
    starts: list[Callable[..., StartedChain]],
    general_calls: list[str],
    option: str,
    value: Any,
    column: int,
) -> None:
    for n, start in enumerate(starts):
        given = uuid.UUID(int=42 + n) if option == "id" else value
        started = start(f"with-{option}", {"n": n}, **{option: given})
        row = stored(dsn, started.id)
        if column == -1:
            assert started.id == given
        elif option == "schedule_after":
            assert row[4] - row[5] == given
        else:
            assert row[column] == given
    assert general_calls == [f"with-{option}"] * 2


def test_the_remaining_options_reach_the_sql_too(
    dsn: str, starts: list[Callable[..., StartedChain]], general_calls: list[str]
) -> None:
    """blockers, and the dedup options (which act only with a key)."""
    for start in starts:
        blocker = start("blocker", None)
        blocked = start("blocked", None, blockers=[blocker.chain_id])
        assert blocked.status == "blocked"
        first = start("deduped", None, dedup_key=f"k-{blocker.id}", dedup_scope="any")
        again = start(
            "deduped", None, dedup_key=f"k-{blocker.id}", dedup_scope="any",
            dedup_window=timedelta(hours=1),
        )
        assert again.deduplicated and again.id == first.id
    assert general_calls == ["blocked", "deduped", "deduped"] * 2


def test_a_bool_priority_is_refused_as_before(
    starts: list[Callable[..., StartedChain]], general_calls: list[str]
) -> None:
    for start in starts:
        with pytest.raises(InvalidArgumentError, match="priority"):
            start("t", None, priority=False)
    assert general_calls == ["t", "t"]


def test_inside_a_hooks_block_the_common_start_reports_the_ready_job(
    dsn: str, general_calls: list[str]
) -> None:
    with psycopg.connect(dsn) as conn:
        with transaction_hooks() as hooks:
            queuert.start_chain(conn, "hooked", None)
            assert hooks.pending[1] == ["hooked"]
            conn.rollback()
    assert general_calls == []  # no broker: nothing to send first


def test_a_broker_block_on_a_session_that_still_notifies_takes_the_general_path(
    dsn: str, general_calls: list[str]
) -> None:
    """The general path sends queuert.notify = 'none' ahead of the call
    (_engine_quiet); once a session is known to have it, the common start
    runs again, and each reports the ready job to its block."""
    with psycopg.connect(dsn, autocommit=True) as notifying, psycopg.connect(
        dsn, autocommit=True, options="-c queuert.notify=none"
    ) as quiet:
        with transaction_hooks(NullNotifier()) as hooks:
            queuert.start_chain(notifying, "loud", None)
            assert hooks.pending[1] == ["loud"]
        for name in ("learns", "known"):  # the first call learns the session's setting
            with transaction_hooks(NullNotifier()) as hooks:
                queuert.start_chain(quiet, name, None)
                assert hooks.pending[1] == [name]
    assert general_calls == ["loud", "learns"]


def test_async_inside_a_hooks_block_the_common_start_reports_the_ready_job(
    dsn: str, general_calls: list[str]
) -> None:
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            with transaction_hooks() as hooks:
                await aio.start_chain(conn, "hooked", None)
                assert hooks.pending[1] == ["hooked"]
                await conn.rollback()

    asyncio.run(scenario())
    assert general_calls == []


FLAKY_START_CHAIN = """
CREATE SCHEMA flaky;
CREATE SEQUENCE flaky.calls;
-- fails with a serialization failure on its first call (the sequence
-- survives the rollback), then delegates to the real one
CREATE FUNCTION flaky.start_chain(
    type_name text, input jsonb DEFAULT NULL, id uuid DEFAULT NULL,
    schedule_at timestamptz DEFAULT NULL, schedule_after interval DEFAULT NULL,
    blockers uuid[] DEFAULT NULL, dedup_key text DEFAULT NULL,
    dedup_scope text DEFAULT 'incomplete', dedup_window interval DEFAULT NULL,
    priority int DEFAULT 0, trace_context text DEFAULT NULL
) RETURNS SETOF queuert.start_chain_result LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('flaky.calls') = 1 THEN
        RAISE EXCEPTION 'simulated conflict' USING ERRCODE = '40001';
    END IF;
    RETURN QUERY SELECT * FROM queuert.start_chain(type_name => type_name, input => input);
END $$;
"""


def test_the_async_common_start_is_retried_after_a_conflict_only_as_its_own_transaction(
    dsn: str, general_calls: list[str]
) -> None:
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as ac:
            await ac.execute(FLAKY_START_CHAIN)
            started = await aio.start_chain(ac, "x", {"n": 1}, schema="flaky")
            assert started.type_name == "x"
            cur = await ac.execute("SELECT last_value FROM flaky.calls")
            assert await cur.fetchone() == (2,)

            await ac.execute("SELECT setval('flaky.calls', 1, false)")  # next call fails again
            with pytest.raises(psycopg.errors.SerializationFailure):
                async with ac.transaction():
                    await aio.start_chain(ac, "x", {"n": 2}, schema="flaky")
            cur = await ac.execute("SELECT count(*) FROM queuert.job")
            assert await cur.fetchone() == (1,)

    asyncio.run(scenario())
    assert general_calls == []
