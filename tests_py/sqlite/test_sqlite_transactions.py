"""The SQLite engine in the caller's transaction, its own transactions, and
SQLite's write lock: jobs commit or roll back with the application's rows,
a refused call writes nothing, "database is locked" is waited out or
becomes a typed error."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import queuert._sqlite as qs
from queuert import retry_on_conflict
from queuert.errors import ChainNotFoundError, InvalidArgumentError


@pytest.fixture
def app_db(db_path: str) -> str:
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    return db_path


def count(path: str, table: str) -> int:
    """Rows committed to ``table``, read by another connection."""
    with sqlite3.connect(path) as other:
        return int(other.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_jobs_commit_and_roll_back_with_the_applications_rows(app_db: str) -> None:
    conn = qs.connect(app_db)
    with qs.transaction(conn):
        conn.execute("INSERT INTO users (email) VALUES ('ada@example.com')")
        qs.start_chain(conn, "send-welcome-email", {"user_id": 1})
    assert (count(app_db, "users"), count(app_db, "queuert_job")) == (1, 1)

    with pytest.raises(RuntimeError), qs.transaction(conn):
        conn.execute("INSERT INTO users (email) VALUES ('bob@example.com')")
        qs.start_chain(conn, "send-welcome-email", {"user_id": 2})
        raise RuntimeError("signup failed after starting its chain")
    assert (count(app_db, "users"), count(app_db, "queuert_job")) == (1, 1), "neither user nor job"


def test_pythons_default_transactions(app_db: str) -> None:
    """A connection in Python's default mode: sqlite3 begins a transaction
    before the application's writes, and a writing call begins one too and
    leaves it open, so the caller's commit() or rollback() settles jobs and
    rows together, whichever came first; reads commit nothing."""
    conn = sqlite3.connect(app_db)
    started = qs.start_chain(conn, "first")
    assert conn.in_transaction
    assert count(app_db, "queuert_job") == 0, "not committed by the call"
    conn.execute("INSERT INTO users (email) VALUES ('ada@example.com')")
    conn.rollback()
    assert (count(app_db, "users"), count(app_db, "queuert_job")) == (0, 0)

    conn.execute("INSERT INTO users (email) VALUES ('ada@example.com')")
    qs.start_chain(conn, "joined")
    assert count(app_db, "queuert_job") == 0, "not yet committed"
    conn.commit()
    assert (count(app_db, "users"), count(app_db, "queuert_job")) == (1, 1)

    assert qs.chain(conn, started["id"]) is None and not conn.in_transaction
    with pytest.raises(ChainNotFoundError):
        qs.start_chain(conn, "refused", blockers=["00000000-0000-0000-0000-000000000999"])
    assert not conn.in_transaction, "a refused call rolls back the transaction it began"
    conn.close()


def test_a_refused_call_keeps_the_callers_writes_and_writes_nothing(app_db: str) -> None:
    conn = qs.connect(app_db)
    with qs.transaction(conn):
        conn.execute("INSERT INTO users (email) VALUES ('ada@example.com')")
        kept = qs.start_chain(conn, "kept")
        with pytest.raises(ChainNotFoundError):
            # the general batch path writes its working table and checks
            # blockers in several statements before it fails
            qs.start_chains(conn, [
                {"type_name": "a", "id": "00000000-0000-0000-0000-000000000001", "dedup_key": "k"},
                {"type_name": "b", "blockers": ["00000000-0000-0000-0000-000000000999"]},
            ])
        with pytest.raises(InvalidArgumentError):
            qs.start_chain(conn, "x", id=kept["id"], blockers=[kept["id"]])
    assert count(app_db, "users") == 1
    assert [r[0] for r in sqlite3.connect(app_db).execute("SELECT type_name FROM queuert_job")] == ["kept"]


def test_row_and_text_factories_of_the_caller_are_left_alone(db_path: str) -> None:
    conn = qs.connect(db_path)
    conn.row_factory = sqlite3.Row
    conn.text_factory = bytes
    started = qs.start_chain(conn, "t", {"a": 1})
    claimed = qs.claim(conn, "w")
    assert claimed[0]["id"] == started["id"] and claimed[0]["input"] == {"a": 1}
    assert conn.text_factory is bytes and conn.row_factory is sqlite3.Row
    assert conn.execute("SELECT type_name FROM queuert_job").fetchone()["type_name"] == b"t"


def test_a_call_waits_for_the_write_lock_within_the_busy_timeout(db_path: str) -> None:
    holder = qs.connect(db_path)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO queuert_job_type (type_name, updated_at) VALUES ('held', 0)")
    result: list[object] = []
    started = threading.Event()

    def start() -> None:
        waiter = qs.connect(db_path, timeout=30)
        started.set()
        result.append(qs.start_chain(waiter, "t"))
        waiter.close()

    thread = threading.Thread(target=start)
    thread.start()
    started.wait()
    thread.join(0.2)
    assert result == [], "it waits while the lock is held"
    holder.execute("COMMIT")
    thread.join(30)
    assert len(result) == 1 and result[0]["status"] == "pending"  # type: ignore[index]


def test_a_lock_held_past_the_busy_timeout_is_a_typed_error(db_path: str) -> None:
    holder = qs.connect(db_path)
    holder.execute("BEGIN IMMEDIATE")
    impatient = qs.connect(db_path, timeout=0.05)
    with pytest.raises(qs.DatabaseBusyError) as e:
        qs.start_chain(impatient, "t")
    assert "busy timeout" in str(e.value)
    assert not impatient.in_transaction
    impatient.execute("BEGIN")
    with pytest.raises(qs.DatabaseBusyError):
        qs.claim(impatient, "w")
    impatient.execute("ROLLBACK")
    holder.execute("ROLLBACK")
    assert count(db_path, "queuert_job") == 0


def test_a_stale_snapshot_is_a_retryable_conflict(app_db: str) -> None:
    """A caller's deferred transaction that read before another connection
    committed may not write (SQLite's BUSY_SNAPSHOT): SnapshotConflictError,
    sqlstate 40001, which retry_on_conflict runs again."""
    conn = sqlite3.connect(app_db, isolation_level=None)
    other = qs.connect(app_db)
    attempts = []

    @retry_on_conflict(base_delay=0)
    def signup() -> None:
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT count(*) FROM users").fetchall()
            if not attempts:
                qs.start_chain(other, "meanwhile")
            attempts.append(1)
            qs.start_chain(conn, "welcome")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    with pytest.raises(qs.SnapshotConflictError) as e:
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM users").fetchall()
        qs.start_chain(other, "meanwhile")
        qs.start_chain(conn, "welcome")
    assert e.value.sqlstate == "40001"
    conn.execute("ROLLBACK")
    signup()
    assert len(attempts) == 2
    assert sorted(r[0] for r in conn.execute("SELECT type_name FROM queuert_job")) == [
        "meanwhile", "meanwhile", "welcome"
    ]


def test_a_transaction_helper_refuses_to_nest(db_path: str) -> None:
    conn = qs.connect(db_path)
    with qs.transaction(conn), pytest.raises(InvalidArgumentError), qs.transaction(conn):
        pass


@pytest.fixture
def conn(db_path: str) -> Iterator[sqlite3.Connection]:
    conn = qs.connect(db_path)
    yield conn
    conn.close()


def test_racing_starts_with_one_dedup_key_create_one_chain(db_path: str) -> None:
    barrier = threading.Barrier(6)
    ids: list[object] = []

    def start() -> None:
        conn = qs.connect(db_path, timeout=30)
        barrier.wait()
        ids.append(qs.start_chain(conn, "welcome", dedup_key="user-7")["id"])
        conn.close()

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 6 and len(set(ids)) == 1
    assert count(db_path, "queuert_job") == 1


def test_racing_continuations_create_one_next_job(db_path: str) -> None:
    setup = qs.connect(db_path)
    root = qs.start_chain(setup, "order")["id"]
    qs.claim(setup, "w")
    barrier = threading.Barrier(4)
    nexts: list[object] = []

    def go() -> None:
        conn = qs.connect(db_path, timeout=30)
        barrier.wait()
        nexts.append(qs.continue_with(conn, root, "w", "pay")["id"])
        conn.close()

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(nexts) == 4 and len(set(nexts)) == 1
    assert count(db_path, "queuert_job") == 2


def test_fan_in_racing_its_blockers_completion_never_strands(db_path: str) -> None:
    """Dependents started while their blocker completes are pending or get
    unblocked: none is left blocked on a complete chain."""
    setup = qs.connect(db_path)
    blockers = [qs.start_chain(setup, "child")["id"] for _ in range(40)]
    qs.claim(setup, "w", max_jobs=40)
    barrier = threading.Barrier(2)

    def complete_all() -> None:
        conn = qs.connect(db_path, timeout=30)
        barrier.wait()
        for b in blockers:
            qs.complete(conn, b, "w")
        conn.close()

    def start_dependents() -> None:
        conn = qs.connect(db_path, timeout=30)
        barrier.wait()
        for b in blockers:
            qs.start_chain(conn, "parent", blockers=[b])
        conn.close()

    threads = [threading.Thread(target=complete_all), threading.Thread(target=start_dependents)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert setup.execute("SELECT count(*) FROM queuert_job WHERE status = 'blocked'").fetchone() == (0,)
    assert setup.execute(
        "SELECT count(*) FROM queuert_job WHERE type_name = 'parent' AND status = 'pending'"
    ).fetchone() == (40,)


def test_a_lease_runs_from_the_claim(conn: sqlite3.Connection) -> None:
    qs.start_chain(conn, "t")
    claimed = qs.claim(conn, "w", lease=timedelta(seconds=30))[0]
    assert timedelta(seconds=29) < claimed["leased_until"] - claimed["scheduled_at"] < timedelta(seconds=60)


def test_a_payload_that_is_not_json_is_refused_before_anything_is_written(conn: sqlite3.Connection) -> None:
    with pytest.raises(InvalidArgumentError, match="JSON"):
        qs.start_chain(conn, "t", {"when": object()})
    with pytest.raises(InvalidArgumentError, match="JSON"):
        qs.start_chains(conn, [{"type_name": "t", "input": float("nan")}])
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM queuert_job").fetchone() == (0,)


def test_builds_without_math_functions_get_pythons(conn: sqlite3.Connection) -> None:
    """The backoff uses ln() and power(), which SQLite builds without
    SQLITE_ENABLE_MATH_FUNCTIONS lack: the engine registers Python's on the
    connection when a statement reports them missing."""
    from queuert._sqlite.fail import _ensure_math

    with pytest.raises(sqlite3.OperationalError):
        _ensure_math(conn, sqlite3.OperationalError("disk I/O error"))  # anything else is re-raised
    _ensure_math(conn, sqlite3.OperationalError("no such function: power"))
    assert conn.execute("SELECT ln(1), power(2, 10)").fetchone() == (0.0, 1024.0)
    qs.set_job_type(conn, "t", backoff_initial=timedelta(seconds=2), backoff_multiplier=1.5)
    job = qs.start_chain(conn, "t")["id"]
    qs.claim(conn, "w")
    conn.execute("UPDATE queuert_job SET attempt = 3 WHERE id = ?", (str(job),))
    failed = qs.fail(conn, job, "w", "x")
    assert failed["status"] == "pending"
    row = conn.execute("SELECT scheduled_at - last_attempt_at FROM queuert_job WHERE id = ?", (str(job),)).fetchone()
    assert row == (4_500_000,), "2 s * 1.5^2, in microseconds"
