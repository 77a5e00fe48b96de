"""Hostile and random input to every public SQL function.

The contract: a call either gives a valid result or raises a QU error
(SQLSTATE ``QU***``), never another server error, and a failed call writes
nothing (the tables are compared before and after).

Two kinds of input never reach the engine and are checked separately, because
the engine cannot see them: a text parameter holding a NUL byte (psycopg refuses
to send it) and a JSON document PostgreSQL's own jsonb input refuses (``\\u0000``,
22P05; nesting deeper than the server's stack allows, 54001). Both fail while
the parameters are converted, before any engine code runs, and write nothing.

Set HYPOTHESIS_PROFILE=ci for a derandomized run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[tuple[Any, ...]]

settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "dev", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

EXAMPLES = 40


# ------------------------------------------------------------------ helpers


@pytest.fixture
def db(dsn: str) -> Iterator[Conn]:
    with psycopg.connect(dsn, autocommit=True) as c:
        yield c


def snapshot(c: Conn) -> tuple[Any, ...]:
    row = c.execute(
        "SELECT"
        " (SELECT count(*) FROM queuert.job),"
        " (SELECT md5(coalesce(string_agg(j::text, '|' ORDER BY j.id), '')) FROM queuert.job AS j),"
        " (SELECT md5(coalesce(string_agg(b::text, '|' ORDER BY b.job_id, b.position), ''))"
        "    FROM queuert.job_blocker AS b),"
        " (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.type_name), '')) FROM queuert.job_type AS t)"
    ).fetchone()
    assert row is not None
    return tuple(row)


def call(c: Conn, query: str, params: Any = ()) -> tuple[list[tuple[Any, ...]] | None, psycopg.Error | None]:
    """One API call in its own transaction: (rows, None) or (None, the QU error).

    Any error that is not a QU error fails the test; a QU error must leave
    every table exactly as it was.
    """
    before = snapshot(c)
    try:
        with c.transaction():
            cur = c.execute(query, params)
            rows = cur.fetchall() if cur.description is not None else []
    except psycopg.Error as exc:
        assert exc.sqlstate is not None and exc.sqlstate.startswith("QU"), (
            f"non-QU error {exc.sqlstate}: {exc}\n  query: {query}\n  params: {_short(params)}"
        )
        assert snapshot(c) == before, f"a failed call wrote something: {query} {_short(params)}"
        return None, exc
    return rows, None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 400 else text[:400] + f"... ({len(text)} chars)"


def expect_qu(c: Conn, code: str, query: str, params: Any = ()) -> psycopg.Error:
    rows, err = call(c, query, params)
    assert err is not None, f"expected {code}, got {rows!r}"
    assert err.sqlstate == code, f"expected {code}, got {err.sqlstate}: {err}"
    return err


def expect_ok(c: Conn, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
    rows, err = call(c, query, params)
    assert err is None, f"expected success, got {err.sqlstate if err else ''}: {err}"
    assert rows is not None
    return rows


def new_job(c: Conn, type_name: str = "h") -> uuid.UUID:
    return expect_ok(c, "SELECT id FROM queuert.start_chain(%s)", (type_name,))[0][0]  # type: ignore[no-any-return]


def running_job(c: Conn, worker: str = "w") -> tuple[uuid.UUID, int]:
    type_name = f"run-{uuid.uuid4().hex[:8]}"
    job = new_job(c, type_name)
    rows = expect_ok(c, "SELECT id, attempt FROM queuert.claim(%s, ARRAY[%s])", (worker, type_name))
    assert rows[0][0] == job
    return job, rows[0][1]


# --------------------------------------------------------------- strategies

SQLISH = [
    "'; DROP TABLE queuert.job; --",
    "x'); DELETE FROM queuert.job; --",
    "$$; SELECT 1; $$",
    "%s %(x)s {} {{ schema }}",
    "queuert.job",
    "NULL",
    "null",
    "\\",
    "\"",
    "' OR '1'='1",
    "\u202e\ufeff\u200b",
    "\t\n\r ",
    " ",
    "😀" * 10,
    "é" * 255,
]

# Text PostgreSQL can hold (no NUL): arbitrary unicode plus crafted strings.
pg_text = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=300),
    st.sampled_from(SQLISH),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    pg_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(pg_text, inner, max_size=4)
    ),
    max_leaves=20,
)
int32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
durations = st.one_of(
    st.none(),
    st.timedeltas(min_value=timedelta(days=-10), max_value=timedelta(days=10)),
    st.timedeltas(min_value=timedelta(days=-999_999_999), max_value=timedelta(days=999_999_999)),
)
timestamps = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
)
ITEM_KEYS = [
    "type_name", "input", "id", "schedule_at", "schedule_after_ms", "blockers",
    "dedup_key", "dedup_scope", "dedup_window_ms", "priority", "trace_context",
]
item_values = st.one_of(
    json_values,
    st.uuids().map(str),
    st.sampled_from(["incomplete", "any", "2030-01-01T00:00:00Z", "yesterday", "infinity", "-infinity",
                     "2020-13-45", "not a time", ""]),
    st.integers(min_value=-(10**17), max_value=10**17),
    st.sampled_from([1e2, 100.0, 1.5, -0.0, 3.15e15, 3.16e15, 1e300, 2**31, -(2**31) - 1]),
    st.lists(st.uuids().map(str), max_size=3),
)
items = st.dictionaries(
    st.one_of(st.sampled_from(ITEM_KEYS), st.sampled_from(ITEM_KEYS), pg_text), item_values, max_size=6
)
batch = st.one_of(
    st.lists(items, max_size=5),
    st.lists(st.fixed_dictionaries({"type_name": pg_text}, optional={"input": json_values}), max_size=5),
    json_values,
)


# ------------------------------------------------------- random: per function


@settings(max_examples=EXAMPLES)
@given(
    type_name=pg_text,
    payload=json_values,
    dedup_key=st.one_of(st.none(), pg_text),
    dedup_scope=st.one_of(st.none(), st.sampled_from(["incomplete", "any"]), pg_text),
    dedup_window=durations,
    schedule_at=timestamps,
    schedule_after=durations,
    priority=st.one_of(st.none(), int32),
    trace_context=st.one_of(st.none(), pg_text),
)
def test_start_chain_random(
    db: Conn,
    type_name: str,
    payload: Any,
    dedup_key: str | None,
    dedup_scope: str | None,
    dedup_window: timedelta | None,
    schedule_at: datetime | None,
    schedule_after: timedelta | None,
    priority: int | None,
    trace_context: str | None,
) -> None:
    rows, err = call(
        db,
        "SELECT id, type_name, deduplicated FROM queuert.start_chain("
        " type_name => %s, input => %s, dedup_key => %s, dedup_scope => %s, dedup_window => %s,"
        " schedule_at => %s, schedule_after => %s, priority => %s, trace_context => %s)",
        (type_name, Jsonb(payload), dedup_key, dedup_scope, dedup_window, schedule_at,
         schedule_after, priority, trace_context),
    )
    valid_name = 1 <= len(type_name) <= 255
    if not valid_name:
        assert err is not None and err.sqlstate == "QU006"
        return
    if err is None:
        assert rows is not None and len(rows) == 1
        job_id, got_type, deduplicated = rows[0]
        assert got_type == type_name
        if not deduplicated:
            # compared as jsonb: JSON numbers have no int/float distinction
            stored = db.execute(
                "SELECT input = %s, type_name, dedup_key, trace_context, priority FROM queuert.job WHERE id = %s",
                (Jsonb(payload), job_id),
            ).fetchone()
            assert stored == (True, type_name, dedup_key, trace_context, priority or 0)
    else:
        # only an argument the contract calls invalid may be refused
        assert err.sqlstate == "QU006", err
        assert (
            dedup_scope not in (None, "incomplete", "any")
            or (dedup_window is not None and dedup_window < timedelta(0))
            or (schedule_after is not None and not timedelta(0) <= schedule_after <= timedelta(days=360_000))
            or (schedule_at is not None and schedule_after is not None)
            or (dedup_key is not None and len(dedup_key.encode()) > 1024)
        ), err


@settings(max_examples=EXAMPLES)
@given(items=batch)
def test_start_chains_random(db: Conn, items: Any) -> None:
    before = db.execute("SELECT count(*) FROM queuert.job").fetchone()
    rows, err = call(db, "SELECT ord, id, type_name, deduplicated FROM queuert.start_chains(%s)", (Jsonb(items),))
    if err is not None:
        assert err.sqlstate in ("QU002", "QU006"), err
        return
    assert isinstance(items, list) and rows is not None
    assert [r[0] for r in rows] == list(range(1, len(items) + 1))
    after = db.execute("SELECT count(*) FROM queuert.job").fetchone()
    assert before is not None and after is not None
    assert after[0] - before[0] == len({r[1] for r in rows if not r[3]})
    for (_ord, job_id, type_name, deduplicated), item in zip(rows, items, strict=True):
        assert type_name == item["type_name"]
        if not deduplicated:
            stored = db.execute(
                "SELECT input IS NOT DISTINCT FROM %s FROM queuert.job WHERE id = %s",
                (None if item.get("input") is None else Jsonb(item["input"]), job_id),
            ).fetchone()
            assert stored == (True,)


def job_states(c: Conn) -> dict[uuid.UUID, tuple[Any, ...]]:
    """Each job's state and ownership: (status, leased_by, attempt, leased_until, scheduled_at)."""
    rows = c.execute(
        "SELECT id, status::text, leased_by, attempt, leased_until, scheduled_at, type_name FROM queuert.job"
    ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def clock(c: Conn) -> datetime:
    row = c.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def lease_ok(lease: timedelta | None) -> bool:
    """claim's rule: a lease, when given, is positive and at most 1000 years."""
    return lease is None or timedelta(0) < lease <= timedelta(days=360_000)


@settings(max_examples=EXAMPLES)
@given(
    worker=st.one_of(st.none(), st.just(""), pg_text),
    type_names=st.one_of(
        st.none(),
        st.lists(st.one_of(st.none(), st.sampled_from(["claimable", "other", "held"]), pg_text), max_size=3),
    ),
    max_jobs=st.one_of(st.none(), st.integers(-2, 3), int32),
    lease=st.one_of(durations, st.just(timedelta(microseconds=1))),
)
def test_claim_and_reap_random(
    db: Conn, worker: str | None, type_names: list[str | None] | None, max_jobs: int | None, lease: timedelta | None
) -> None:
    """Invalid arguments are refused with QU006 and no job changes state or
    owner; valid ones take exactly the due pending jobs they may take, and
    reap exactly the expired leases, touching nothing else."""
    db.execute("TRUNCATE queuert.job_blocker, queuert.job")
    for type_name in ("claimable", "claimable", "other"):
        new_job(db, type_name)
    running_job(db, "holder")  # a live lease: never reaped
    gone, _ = running_job(db, "gone")
    db.execute("UPDATE queuert.job SET leased_until = now() - interval '1 hour' WHERE id = %s", (gone,))

    # claim
    before = job_states(db)
    rows, err = call(db, "SELECT id, attempt, leased_by FROM queuert.claim(%s, %s, %s, %s)",
                     (worker, type_names, max_jobs, lease))
    valid = bool(worker) and (max_jobs is None or max_jobs >= 1) and lease_ok(lease)
    if not valid:
        assert err is not None and err.sqlstate == "QU006", f"invalid claim accepted: {rows}"
        assert job_states(db) == before
    else:
        assert err is None and rows is not None
        due = [
            job for job, (status, *_, type_name) in before.items()
            if status == "pending" and (type_names is None or type_name in type_names)
        ]
        claimed = {r[0] for r in rows}
        assert claimed <= set(due) and len(claimed) == len(rows) == min(max_jobs or 1, len(due))
        after = job_states(db)
        for job, state in after.items():
            if job in claimed:
                assert state[:3] == ("running", worker, before[job][2] + 1), state
            else:
                assert state == before[job], f"job {job} changed without being claimed"

    # reap
    before = job_states(db)
    t0 = clock(db)
    rows, err = call(db, "SELECT job_id, previous_worker, status FROM queuert.reap(%s)", (max_jobs,))
    t1 = clock(db)
    if max_jobs is not None and max_jobs < 1:
        assert err is not None and err.sqlstate == "QU006", f"invalid reap accepted: {rows}"
        assert job_states(db) == before
    else:
        assert err is None and rows is not None
        limit = max_jobs or 100
        running = {job: state for job, state in before.items() if state[0] == "running"}
        surely = {job for job, state in running.items() if state[3] < t0}
        maybe = {job for job, state in running.items() if state[3] < t1}  # expired during the call
        reaped = {r[0] for r in rows}
        assert gone in surely and reaped <= maybe and len(reaped) <= limit
        if len(surely) <= limit:
            assert surely <= reaped
        assert all(r[1] == before[r[0]][1] and r[2] == "pending" for r in rows)
        after = job_states(db)
        for job, state in after.items():
            if job in reaped:
                assert state[:4] == ("pending", None, before[job][2], None), state
            else:
                assert state == before[job], f"job {job} changed without being reaped"

    # next_due_at: NULL exactly when no pending job of those types exists
    rows, err = call(db, "SELECT queuert.next_due_at(%s) IS NULL", (type_names,))
    assert err is None and rows is not None
    pending = [t for status, *_, t in job_states(db).values()
               if status == "pending" and (type_names is None or t in type_names)]
    assert rows == [(not pending,)]


@settings(max_examples=EXAMPLES)
@given(
    worker=st.one_of(st.none(), st.just("w"), pg_text),
    output=json_values,
    attempt=st.one_of(st.none(), st.just(1), int32),
    how=st.sampled_from(["complete", "continue", "fail", "renew", "complete_jobs"]),
    text=pg_text,
    lease=durations,
    retry_at=timestamps,
)
def test_finishing_a_job_random(
    db: Conn,
    worker: str | None,
    output: Any,
    attempt: int | None,
    how: str,
    text: str,
    lease: timedelta | None,
    retry_at: datetime | None,
) -> None:
    job, _ = running_job(db, "w")
    if how == "complete":
        rows, err = call(db, "SELECT status FROM queuert.complete(%s, %s, %s, %s)", (job, worker, Jsonb(output), attempt))
        if err is None:
            stored = db.execute("SELECT output = %s, status FROM queuert.job WHERE id = %s", (Jsonb(output), job)).fetchone()
            assert stored == (True, "completed")
    elif how == "continue":
        call(
            db,
            "SELECT id FROM queuert.continue_with(%s, %s, %s, input => %s, attempt => %s, trace_context => %s)",
            (job, worker, text, Jsonb(output), attempt, text),
        )
    elif how == "fail":
        call(db, "SELECT status FROM queuert.fail(%s, %s, %s, %s, %s)", (job, worker, text, retry_at, attempt))
    elif how == "renew":
        call(db, "SELECT * FROM queuert.renew_leases(%s, ARRAY[%s]::uuid[], %s)", (worker, job, lease))
    else:
        call(
            db,
            "SELECT * FROM queuert.complete_jobs(%s, ARRAY[%s]::uuid[], ARRAY[%s]::jsonb[], ARRAY[%s]::int[])",
            (worker, job, Jsonb(output), attempt),
        )


@settings(max_examples=EXAMPLES)
@given(
    ids=st.one_of(
        st.none(),
        st.lists(st.one_of(st.none(), st.uuids(), st.sampled_from(["existing", "running", "failed"])), max_size=5),
    ),
    cascade=st.one_of(st.none(), st.booleans()),
    fn=st.sampled_from(["trigger_jobs", "retry_jobs", "cancel_chains", "delete_chains"]),
)
def test_id_array_functions_random(db: Conn, ids: list[Any] | None, cascade: bool | None, fn: str) -> None:
    """A refused call (the QU code predicted from the ids) changes no job's
    state or owner; an accepted one changes exactly the jobs it names."""
    db.execute("TRUNCATE queuert.job_blocker, queuert.job")
    existing = new_job(db)
    running, _ = running_job(db)
    db.execute("SELECT queuert.set_job_type('fragile', max_attempts => 1)")
    failed = new_job(db, "fragile")
    expect_ok(db, "SELECT * FROM queuert.claim('w', ARRAY['fragile'])")
    assert expect_ok(db, "SELECT status FROM queuert.fail(%s, 'w', 'boom')", (failed,)) == [("failed",)]
    bystander = new_job(db)
    named_as = {"existing": existing, "running": running, "failed": failed}
    real = None if ids is None else [named_as.get(i, i) if isinstance(i, str) else i for i in ids]
    before = job_states(db)
    distinct = list(dict.fromkeys(real or []))

    expected: str | None = None
    if fn in ("trigger_jobs", "retry_jobs"):
        allowed = ("pending",) if fn == "trigger_jobs" else ("failed", "cancelled")
        if real is None or None in real:
            expected = "QU006"
        elif any(i not in before for i in distinct):
            expected = "QU001"
        elif any(before[i][0] not in allowed for i in distinct):
            expected = "QU003"
        rows, err = call(db, f"SELECT * FROM queuert.{fn}(%s::uuid[])", (real,))
    else:
        # unknown ids and NULL elements are skipped; only a missing array is refused
        expected = "QU006" if real is None else None
        rows, err = call(db, f"SELECT * FROM queuert.{fn}(%s::uuid[], %s)", (real, cascade))

    if expected is not None:
        assert err is not None and err.sqlstate == expected, f"expected {expected}, got {err or rows}"
        assert job_states(db) == before
        return
    assert err is None and rows is not None, err
    named = [i for i in distinct if i in before]
    assert [r[0] for r in rows] == named
    after = job_states(db)
    assert bystander in after and after[bystander] == before[bystander]
    for job, state in before.items():
        if job not in named or fn == "trigger_jobs":
            # triggering a job that is already due changes nothing
            assert after[job] == state, f"{fn}: job {job} changed"
        elif fn == "retry_jobs":
            assert after[job][:4] == ("pending", None, 0, None)
        elif fn == "cancel_chains":
            assert after[job][:4] == ("cancelled", None, state[2], None)
        else:
            assert job not in after


@settings(max_examples=EXAMPLES)
@given(
    type_name=pg_text,
    max_attempts=st.one_of(st.none(), int32),
    backoff_initial=durations,
    backoff_multiplier=st.one_of(st.none(), st.floats()),
    backoff_max=durations,
    lease=durations,
)
def test_set_job_type_random(
    db: Conn,
    type_name: str,
    max_attempts: int | None,
    backoff_initial: timedelta | None,
    backoff_multiplier: float | None,
    backoff_max: timedelta | None,
    lease: timedelta | None,
) -> None:
    rows, err = call(
        db,
        "SELECT type_name FROM queuert.set_job_type(%s, %s, %s, %s, %s, %s)",
        (type_name, max_attempts, backoff_initial, backoff_multiplier, backoff_max, lease),
    )
    if err is not None:
        return
    # an accepted policy must never make the engine fail later: run a job of
    # that type through claim, fail (backoff) and reap
    job = new_job(db, type_name)
    claimed = expect_ok(db, "SELECT id FROM queuert.claim('p', ARRAY[%s], 1000)", (type_name,))
    assert job in [r[0] for r in claimed]
    expect_ok(db, "SELECT status FROM queuert.fail(%s, 'p', 'boom')", (job,))
    expect_ok(db, "SELECT * FROM queuert.reap()")


# ------------------------------------------------------------ fixed cases


def test_huge_json_round_trips(db: Conn) -> None:
    big = {"blob": "x" * 3_000_000, "list": list(range(100_000)), "nested": {"k" * 1000: ["é" * 10_000]}}
    job = expect_ok(db, "SELECT id FROM queuert.start_chain('huge', %s)", (Jsonb(big),))[0][0]
    rows = expect_ok(db, "SELECT ord, id FROM queuert.start_chains(%s)", (Jsonb([{"type_name": "huge", "input": big}] * 3),))
    assert len(rows) == 3
    claimed = expect_ok(db, "SELECT id, input FROM queuert.claim('w', ARRAY['huge'], 10)")
    assert len(claimed) == 4 and all(r[1] == big for r in claimed)
    expect_ok(db, "SELECT * FROM queuert.complete(%s, 'w', %s)", (job, Jsonb(big)))
    assert db.execute("SELECT output FROM queuert.chain WHERE chain_id = %s", (job,)).fetchone() == (big,)
    err_text = "e" * 2_000_000
    other = rows[0][1]
    expect_ok(db, "SELECT * FROM queuert.fail(%s, 'w', %s)", (other, err_text))
    assert db.execute("SELECT length(last_attempt_error) FROM queuert.job WHERE id = %s", (other,)).fetchone() == (
        2_000_000,
    )


def test_deeply_nested_json(db: Conn) -> None:
    depth = 5000
    deep = "[" * depth + "]" * depth
    job = expect_ok(db, "SELECT id FROM queuert.start_chain('deep', %s::jsonb)", (deep,))[0][0]
    expect_ok(db, "SELECT * FROM queuert.start_chains(%s::jsonb)", (f'[{{"type_name": "deep", "input": {deep}}}]',))
    # deeply nested items themselves are malformed items, not server errors
    expect_qu(db, "QU006", "SELECT * FROM queuert.start_chains(%s::jsonb)", ("[" + deep + "]",))
    claimed = expect_ok(db, "SELECT id FROM queuert.claim('w', ARRAY['deep'], 5)")
    assert len(claimed) == 2
    expect_ok(db, "SELECT * FROM queuert.complete(%s, 'w', %s::jsonb)", (job, deep))
    stored = db.execute("SELECT output::text = %s::jsonb::text FROM queuert.job WHERE id = %s", (deep, job)).fetchone()
    assert stored == (True,)

    # beyond what the server's jsonb parser allows: refused while the
    # parameter is converted, before the engine runs; nothing written
    too_deep = "[" * 200_000 + "]" * 200_000
    before = snapshot(db)
    with pytest.raises(psycopg.errors.StatementTooComplex):
        db.execute("SELECT * FROM queuert.start_chain('deep', %s::jsonb)", (too_deep,))
    assert snapshot(db) == before


def test_nul_is_refused_before_the_engine_and_writes_nothing(db: Conn) -> None:
    before = snapshot(db)
    # JSON \u0000: jsonb's own input refuses it
    for query, params in [
        ("SELECT * FROM queuert.start_chain('nul', %s::jsonb)", ('{"a": "x\\u0000y"}',)),
        ("SELECT * FROM queuert.start_chains(%s::jsonb)", ('[{"type_name": "a\\u0000b"}]',)),
        ("SELECT * FROM queuert.start_chains(%s::jsonb)", ('[{"type_name": "ok", "input": "\\u0000"}]',)),
    ]:
        with pytest.raises(psycopg.errors.UntranslatableCharacter):
            db.execute(query, params)
    # a NUL byte in a text parameter: the driver refuses to send it
    for query, params in [
        ("SELECT * FROM queuert.start_chain(%s)", ("a\x00b",)),
        ("SELECT * FROM queuert.start_chain('ok', dedup_key => %s)", ("k\x00",)),
        ("SELECT * FROM queuert.claim(%s)", ("w\x00",)),
    ]:
        with pytest.raises(psycopg.DataError, match="NUL"):
            db.execute(query, params)
    # Jsonb adapter: the server's jsonb input refuses the escaped NUL
    with pytest.raises(psycopg.errors.UntranslatableCharacter):
        db.execute("SELECT * FROM queuert.start_chain('nul', %s)", (Jsonb({"a": "x\x00y"}),))
    assert snapshot(db) == before


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a" * 255, True),
        ("a" * 256, False),
        ("é" * 255, True),
        ("é" * 256, False),
        ("𝄞" * 255, True),
        ("𝄞" * 256, False),
        ("", False),
        (" ", True),
        ("\t\n", True),
        (" leading and trailing ", True),
        ("'; DROP TABLE queuert.job; --", True),
        ("\u202eRTL", True),
    ],
)
def test_type_name_edges(db: Conn, name: str, ok: bool) -> None:
    job, _ = running_job(db)
    queries = [
        ("SELECT type_name FROM queuert.start_chain(%s)", (name,)),
        ("SELECT type_name FROM queuert.start_chains(%s)", (Jsonb([{"type_name": name}]),)),
        ("SELECT type_name FROM queuert.set_job_type(%s)", (name,)),
        ("SELECT type_name FROM queuert.continue_with(%s, 'w', %s)", (job, name)),
    ]
    for query, params in queries:
        if ok:
            rows = expect_ok(db, query, params)
            assert rows == [(name,)]
        else:
            err = expect_qu(db, "QU006", query, params)
            assert "255" in str(err)
    if ok:
        assert db.execute("SELECT count(*) FROM queuert.job WHERE type_name = %s", (name,)).fetchone() == (3,)
        assert db.execute("SELECT count(*) FROM queuert.stats WHERE type_name = %s", (name,)).fetchone() == (1,)


def test_sql_looking_strings_are_data(db: Conn) -> None:
    for s in SQLISH:
        job = expect_ok(
            db,
            "SELECT id FROM queuert.start_chain(%s, dedup_key => %s, trace_context => %s)",
            (s, s, s),
        )[0][0]
        got = expect_ok(db, "SELECT id, leased_by FROM queuert.claim(%s, ARRAY[%s])", (s, s))
        assert got == [(job, s)]
        expect_ok(db, "SELECT * FROM queuert.fail(%s, %s, %s)", (job, s, s))
        assert db.execute(
            "SELECT type_name, dedup_key, trace_context, last_attempt_error FROM queuert.job WHERE id = %s", (job,)
        ).fetchone() == (s, s, s, s)
    assert db.execute("SELECT count(*) FROM queuert.job").fetchone() == (len(SQLISH),)


def test_multidimensional_arrays_are_qu006(db: Conn) -> None:
    job = new_job(db)
    md = [[job, job], [job, job]]
    for query, params in [
        ("SELECT * FROM queuert.start_chain('x', blockers => %s::uuid[])", (md,)),
        ("SELECT * FROM queuert.continue_with(%s, NULL, 'x', blockers => %s::uuid[])", (job, md)),
        ("SELECT * FROM queuert.trigger_jobs(%s::uuid[])", (md,)),
        ("SELECT * FROM queuert.retry_jobs(%s::uuid[])", (md,)),
        ("SELECT * FROM queuert.cancel_chains(%s::uuid[])", (md,)),
        ("SELECT * FROM queuert.delete_chains(%s::uuid[], true)", (md,)),
        ("SELECT * FROM queuert.renew_leases('w', %s::uuid[])", (md,)),
        ("SELECT * FROM queuert.complete_jobs('w', %s::uuid[])", (md,)),
    ]:
        expect_qu(db, "QU006", query, params)
    # type name arrays may be of any shape: they are only matched with = ANY
    assert expect_ok(db, "SELECT count(*) FROM queuert.claim('w', %s::text[])", ([["h", "y"], ["z", "q"]],)) == [(1,)]


FIXED_CASES = [
        ("SELECT * FROM queuert.start_chain('x', schedule_after => '1001 years')", "QU006"),
        ("SELECT * FROM queuert.start_chain('x', schedule_after => '1000 years')", None),
        ("SELECT * FROM queuert.start_chain('x', dedup_key => 'k', dedup_window => '170000000 years')", None),
        ("SELECT * FROM queuert.start_chains('[{\"type_name\": \"x\", \"dedup_key\": \"k\", "
         "\"dedup_window_ms\": 3.1e15}]')", None),
        ("SELECT * FROM queuert.start_chains('[{\"type_name\": \"x\", \"priority\": 1e2}]')", None),
        ("SELECT * FROM queuert.start_chains('[{\"type_name\": \"x\", \"priority\": 100.0}]')", None),
        ("SELECT * FROM queuert.start_chains('[{\"type_name\": \"x\", \"priority\": 1.5}]')", "QU006"),
        ("SELECT * FROM queuert.start_chains('[{\"type_name\": \"x\", \"schedule_at\": \"294277-01-01\"}]')",
         "QU006"),
        ("SELECT * FROM queuert.start_chains('[{\"type_name\": \"x\", \"schedule_at\": \"\"}]')", "QU006"),
        ("SELECT * FROM queuert.start_chains('[{\"type_name\": \"x\", \"schedule_at\": 5}]')", "QU006"),
        ("SELECT * FROM queuert.start_chains('[{\"type_name\": \"x\", \"blockers\": [1]}]')", "QU006"),
        ("SELECT * FROM queuert.start_chains('[{\"type_name\": \"x\", \"blockers\": \"a\"}]')", "QU006"),
        ("SELECT * FROM queuert.start_chains('[{\"type_name\": \"x\", \"id\": \"nope\"}]')", "QU006"),
        ("SELECT * FROM queuert.start_chains('[{\"type_name\": [\"x\"]}]')", "QU006"),
        ("SELECT * FROM queuert.start_chains('[{\"type_name\": \"x\", \"extra\": 1}]')", "QU006"),
        ("SELECT * FROM queuert.start_chains('[{\"type_name\": \"x\"}, 7]')", "QU006"),
        ("SELECT * FROM queuert.start_chains('{\"type_name\": \"x\"}')", "QU006"),
        ("SELECT * FROM queuert.start_chains('\"x\"')", "QU006"),
        ("SELECT * FROM queuert.start_chains('null')", "QU006"),
        ("SELECT * FROM queuert.start_chains(NULL)", "QU006"),
        ("SELECT * FROM queuert.start_chains('[]')", None),
        ("SELECT * FROM queuert.start_chains('[null]')", "QU006"),
        ("SELECT * FROM queuert.start_chains('[{}]')", "QU006"),
        ("SELECT * FROM queuert.start_chains('[{\"type_name\": null}]')", "QU006"),
        ("SELECT * FROM queuert.start_chains('[{\"type_name\": \"x\", \"input\": null, \"id\": null, "
         "\"schedule_at\": null, \"schedule_after_ms\": null, \"blockers\": null, \"dedup_key\": null, "
         "\"dedup_scope\": null, \"dedup_window_ms\": null, \"priority\": null, \"trace_context\": null}]')",
         None),
        # year 10000 and later cannot be read back by Python (and other drivers)
        ("SELECT id FROM queuert.start_chain('x', schedule_at => 'infinity')", "QU006"),
        ("SELECT id FROM queuert.start_chain('x', schedule_at => '10000-01-01 00:00:00+00')", "QU006"),
        ("SELECT id FROM queuert.start_chain('x', schedule_at => '9999-12-31 23:00:00+00')", None),
        ("SELECT id FROM queuert.start_chains('[{\"type_name\": \"x\", \"schedule_at\": \"infinity\"}]')",
         "QU006"),
        ("SELECT id FROM queuert.start_chains('[{\"type_name\": \"x\", \"schedule_after_ms\": 3.2e13}]')",
         "QU006"),
        ("SELECT id FROM queuert.start_chains('[{\"type_name\": \"x\", \"schedule_after_ms\": 3.1e13}]')",
         None),
        ("SELECT id FROM queuert.fail((SELECT id FROM queuert.job LIMIT 1), NULL, 'e', 'infinity')", "QU006"),
        ("SELECT id FROM queuert.fail((SELECT id FROM queuert.job LIMIT 1), NULL, 'e', '9999-01-01')", None),
        ("SELECT id FROM queuert.start_chain('x', schedule_at => '-infinity')", None),
        ("SELECT * FROM queuert.claim('w', lease => '1001 years')", "QU006"),
        ("SELECT * FROM queuert.claim('w', lease => '1 month -30 days')", "QU006"),
        ("SELECT * FROM queuert.claim('w', max_jobs => 0)", "QU006"),
        ("SELECT * FROM queuert.claim('w', max_jobs => 2147483647)", None),
        ("SELECT * FROM queuert.claim('')", "QU006"),
        ("SELECT * FROM queuert.reap(0)", "QU006"),
        ("SELECT * FROM queuert.reap(2147483647)", None),
        ("SELECT * FROM queuert.renew_leases('w', '{}', '1001 years')", "QU006"),
        ("SELECT * FROM queuert.set_job_type('x', lease => '1001 years')", "QU006"),
        ("SELECT * FROM queuert.set_job_type('x', backoff_initial => '1001 years')", "QU006"),
        ("SELECT * FROM queuert.set_job_type('x', backoff_max => '1001 years')", "QU006"),
        ("SELECT * FROM queuert.set_job_type('x', backoff_multiplier => 'NaN')", "QU006"),
        ("SELECT * FROM queuert.set_job_type('x', backoff_multiplier => '-Infinity')", "QU006"),
        ("SELECT * FROM queuert.set_job_type('x', backoff_multiplier => 0.5)", "QU006"),
        ("SELECT * FROM queuert.set_job_type('x', max_attempts => 0)", "QU006"),
        ("SELECT * FROM queuert.set_job_type('x', max_attempts => -2147483648)", "QU006"),
        ("SELECT type_name FROM queuert.set_job_type('x', backoff_multiplier => 1e308, "
         "backoff_max => '1000 years', backoff_initial => '1000 years')", None),
        ("SELECT * FROM queuert.start_chain('x', dedup_key => repeat('k', 1025))", "QU006"),
        ("SELECT * FROM queuert.start_chain('x', dedup_key => repeat('é', 513))", "QU006"),
        ("SELECT * FROM queuert.start_chain('x', dedup_key => repeat('k', 1024))", None),
        ("SELECT * FROM queuert.start_chains(jsonb_build_array(jsonb_build_object("
         "'type_name', 'x', 'dedup_key', repeat('k', 1025))))", "QU006"),
        ("SELECT * FROM queuert.start_chain('x', dedup_scope => 'ANY')", "QU006"),
        ("SELECT * FROM queuert.start_chain('x', dedup_window => '-1 second')", "QU006"),
        ("SELECT * FROM queuert.start_chain('x', schedule_after => '-1 second')", "QU006"),
        ("SELECT * FROM queuert.start_chain('x', schedule_at => now(), schedule_after => '1 s')", "QU006"),
        ("SELECT * FROM queuert.start_chain('x', blockers => ARRAY[NULL]::uuid[])", "QU006"),
        ("SELECT * FROM queuert.start_chain('x', blockers => ARRAY[gen_random_uuid()])", "QU002"),
        ("SELECT * FROM queuert.start_chain('x', blockers => '{}')", None),
        ("SELECT * FROM queuert.trigger_jobs(ARRAY[NULL]::uuid[])", "QU006"),
        ("SELECT * FROM queuert.trigger_jobs(ARRAY[gen_random_uuid()])", "QU001"),
        ("SELECT * FROM queuert.trigger_jobs('{}')", None),
        ("SELECT * FROM queuert.retry_jobs(ARRAY[gen_random_uuid()])", "QU001"),
        ("SELECT * FROM queuert.cancel_chains(ARRAY[NULL, gen_random_uuid()]::uuid[])", None),
        ("SELECT * FROM queuert.delete_chains('{}', NULL)", None),
        ("SELECT * FROM queuert.complete(gen_random_uuid(), 'w')", "QU001"),
        ("SELECT * FROM queuert.continue_with(gen_random_uuid(), 'w', 'x')", "QU001"),
        ("SELECT * FROM queuert.fail(gen_random_uuid(), 'w', 'e')", "QU001"),
        ("SELECT * FROM queuert.complete_jobs('w', ARRAY[gen_random_uuid()], '{}')", "QU006"),
        ("SELECT * FROM queuert.complete_jobs('w', ARRAY[gen_random_uuid()])", None),
        ("SELECT * FROM queuert.renew_leases('w', ARRAY[gen_random_uuid()])", None),
        ("SELECT * FROM queuert.chain_jobs(gen_random_uuid())", None),
        ("SELECT * FROM queuert.next_due_at('{NULL}')", None),
]


def test_fixed_cases(db: Conn) -> None:
    """Each case in its own transaction on one database: the expected QU
    code (and nothing written), or success."""
    problems = []
    for query, code in FIXED_CASES:
        new_job(db)
        try:
            if code is None:
                expect_ok(db, query)
            else:
                expect_qu(db, code, query)
        except AssertionError as exc:
            problems.append(f"{query}\n    {str(exc).splitlines()[0]}")
    assert not problems, "\n".join(problems)


# Every public function, with every argument NULL in turn and all at once.
# Argument lists that are valid on their own; {job} is a running job of
# worker 'w', {chain} its chain.
SIGNATURES: dict[str, list[str]] = {
    "start_chain": ["'n'", "'{{}}'::jsonb", "gen_random_uuid()", "now()", "NULL::interval", "ARRAY[{chain}]",
                    "'k'", "'any'", "'1 hour'::interval", "1", "'tc'"],
    "start_chains": ["'[{{\"type_name\": \"n\"}}]'::jsonb"],
    "claim": ["'w2'", "ARRAY['n']", "1", "'1 minute'::interval"],
    "complete": ["{job}", "'w'", "'{{}}'::jsonb", "1"],
    "complete_jobs": ["'w'", "ARRAY[{job}]", "ARRAY['{{}}'::jsonb]", "ARRAY[1]"],
    "continue_with": ["{job}", "'w'", "'n'", "'{{}}'::jsonb", "gen_random_uuid()", "NULL::timestamptz",
                      "'1 s'::interval", "NULL::uuid[]", "1", "'tc'", "1"],
    "fail": ["{job}", "'w'", "'err'", "now()", "1"],
    "renew_leases": ["'w'", "ARRAY[{job}]", "'1 minute'::interval"],
    "release_jobs": ["'w'", "ARRAY[{job}]", "ARRAY[1]"],
    "release_unknown_jobs": ["'w'", "ARRAY[{job}]"],
    "reap": ["10"],
    "reap_jobs": ["10"],
    "next_due_at": ["ARRAY['n']"],
    "trigger_jobs": ["ARRAY[{job}]"],
    "retry_jobs": ["ARRAY[{job}]"],
    "cancel_chains": ["ARRAY[{chain}]", "true"],
    "delete_chains": ["ARRAY[{chain}]", "true"],
    "set_job_type": ["'n'", "3", "'1 s'::interval", "2", "'1 minute'::interval", "'30 s'::interval"],
    "chain_jobs": ["{chain}"],
}


@pytest.mark.parametrize("fn", sorted(SIGNATURES))
def test_nulls_everywhere(db: Conn, fn: str) -> None:
    args = SIGNATURES[fn]
    variants = [None, *range(len(args))]
    for null_at in [*variants, "all"]:
        job, _ = running_job(db, "w")
        chain = f"'{job}'::uuid"
        rendered = [a.format(job=f"'{job}'::uuid", chain=chain) for a in args]
        if null_at == "all":
            rendered = ["NULL"] * len(rendered)
        elif null_at is not None:
            rendered[null_at] = "NULL"
        call(db, f"SELECT * FROM queuert.{fn}({', '.join(rendered)})")
    # the views never fail either, whatever the rows hold
    expect_ok(db, "SELECT * FROM queuert.chain")
    expect_ok(db, "SELECT * FROM queuert.stats")


def test_wrong_types_fail_before_the_engine_and_write_nothing(db: Conn) -> None:
    """Typed SQL arguments: a value of the wrong type is refused by PostgreSQL
    while the call is parsed (no such function, or the literal does not
    convert), before any engine code runs."""
    before = snapshot(db)
    for query, params in [
        ("SELECT * FROM queuert.start_chain(%s)", (123,)),
        ("SELECT * FROM queuert.start_chain('x', input => %s::jsonb)", ("{not json",)),
        ("SELECT * FROM queuert.start_chain('x', id => %s::uuid)", ("not-a-uuid",)),
        ("SELECT * FROM queuert.start_chain('x', priority => %s::int)", ("2147483648",)),
        ("SELECT * FROM queuert.claim('w', max_jobs => %s::int)", ("1.5",)),
        ("SELECT * FROM queuert.complete(%s, 'w')", (42,)),
    ]:
        with pytest.raises(psycopg.Error) as info:
            db.execute(query, params)
        assert info.value.sqlstate is not None and info.value.sqlstate[:2] in ("22", "42"), info.value
    assert snapshot(db) == before
