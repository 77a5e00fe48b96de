"""Engine notifications, observed with LISTEN on a second connection.

Postgres delivers notifications in commit order, so after each step a third
connection sends a sentinel NOTIFY; everything the step sent has arrived once
the sentinel has, and nothing more can come from it. No sleeps, no guessing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from queuert.migrate import migrate

Conn = psycopg.Connection[Any]
SENTINEL = "queuert_test_sentinel"


class Listener:
    def __init__(self, dsn: str, schema: str = "queuert") -> None:
        self.schema = schema
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.poke = psycopg.connect(dsn, autocommit=True)
        self._seq = 0
        for suffix in ("job_ready", "chain_completed", "job_lost"):
            self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(f"{schema}_{suffix}")))
        self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(SENTINEL)))

    def drain(self) -> list[tuple[str, str]]:
        """Everything delivered so far, as (channel suffix, payload)."""
        self._seq += 1
        marker = str(self._seq)
        self.poke.execute("SELECT pg_notify(%s, %s)", (SENTINEL, marker))
        got: list[tuple[str, str]] = []
        deadline = time.monotonic() + 10
        for n in self.conn.notifies(timeout=10):
            if n.channel == SENTINEL:
                if n.payload == marker:
                    return got
                continue
            prefix = self.schema + "_"
            assert n.channel.startswith(prefix), n.channel
            got.append((n.channel[len(prefix):], n.payload))
            assert time.monotonic() < deadline
        raise AssertionError("sentinel notification never arrived")

    def close(self) -> None:
        self.conn.close()
        self.poke.close()


@pytest.fixture
def listener(dsn: str) -> Iterator[Listener]:
    lis = Listener(dsn)
    try:
        yield lis
    finally:
        lis.close()


@pytest.fixture(autouse=True)
def _dict_rows(conn: Conn) -> None:
    conn.row_factory = dict_row


def one(conn: Conn, query: str, params: Any = None) -> dict[str, Any]:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row


def start(conn: Conn, type_name: str, **kw: Any) -> uuid.UUID:
    args = "".join(f", {k} => %({k})s" for k in kw)
    return one(
        conn,
        f"SELECT * FROM queuert.start_chain(type_name => %(type_name)s{args})",
        {"type_name": type_name, **kw},
    )["id"]


def claim(conn: Conn, worker: str, type_name: str, lease: str | None = None) -> uuid.UUID:
    rows = conn.execute(
        "SELECT id FROM queuert.claim(worker_id => %s, type_names => %s, lease => %s::interval)",
        (worker, [type_name], lease),
    ).fetchall()
    assert len(rows) == 1
    return rows[0]["id"]


def committed(conn: Conn, listener: Listener) -> list[tuple[str, str]]:
    conn.commit()
    return listener.drain()


# ------------------------------------------------------------- job_ready


def test_job_ready_payload_is_type_name_and_sent_only_on_commit(
    conn: Conn, listener: Listener
) -> None:
    start(conn, "send-email")
    assert listener.drain() == []  # not yet committed
    assert committed(conn, listener) == [("job_ready", "send-email")]


def test_rolled_back_start_sends_nothing(conn: Conn, listener: Listener) -> None:
    start(conn, "send-email")
    conn.execute("SELECT * FROM queuert.start_chains(%s)", (json.dumps([{"type_name": "x"}]),))
    conn.rollback()
    assert listener.drain() == []


def test_job_ready_also_for_a_job_due_later(conn: Conn, listener: Listener) -> None:
    start(conn, "later", schedule_after="1 hour")
    assert committed(conn, listener) == [("job_ready", "later")]


def test_blocked_start_sends_no_job_ready(conn: Conn, listener: Listener) -> None:
    blocker = start(conn, "blocker")
    conn.commit()
    listener.drain()
    start(conn, "waiter", blockers=[blocker])
    assert committed(conn, listener) == []


def test_start_chains_of_10000_one_type_sends_one_notification(
    conn: Conn, listener: Listener
) -> None:
    items = [{"type_name": "bulk", "input": i} for i in range(10_000)]
    rows = conn.execute("SELECT count(*) AS n FROM queuert.start_chains(%s)", (json.dumps(items),))
    assert rows.fetchone() == {"n": 10_000}
    assert committed(conn, listener) == [("job_ready", "bulk")]


def test_start_chains_of_two_types_sends_two_notifications(
    conn: Conn, listener: Listener
) -> None:
    items = [{"type_name": "even" if i % 2 == 0 else "odd"} for i in range(10_000)]
    conn.execute("SELECT count(*) FROM queuert.start_chains(%s)", (json.dumps(items),))
    got = committed(conn, listener)
    assert sorted(got) == [("job_ready", "even"), ("job_ready", "odd")]


def test_start_chains_blocked_items_do_not_notify(conn: Conn, listener: Listener) -> None:
    first = str(uuid.uuid4())
    items = [
        {"type_name": "fan-out", "id": first},
        {"type_name": "fan-in", "blockers": [first]},
    ]
    conn.execute("SELECT count(*) FROM queuert.start_chains(%s)", (json.dumps(items),))
    assert committed(conn, listener) == [("job_ready", "fan-out")]


def test_unblocked_job_notifies_job_ready_and_chain_completed(
    conn: Conn, listener: Listener
) -> None:
    blocker = start(conn, "blocker")
    start(conn, "waiter", blockers=[blocker])
    conn.commit()
    job = claim(conn, "w1", "blocker")
    assert committed(conn, listener) == [("job_ready", "blocker")]
    one(conn, "SELECT * FROM queuert.complete(job_id => %s, worker_id => 'w1')", (job,))
    got = committed(conn, listener)
    assert sorted(got) == [("chain_completed", str(blocker)), ("job_ready", "waiter")]


def test_fail_to_pending_notifies_job_ready_fail_to_failed_does_not(
    conn: Conn, listener: Listener
) -> None:
    conn.execute("SELECT queuert.set_job_type(type_name => 'flaky', max_attempts => 2)")
    start(conn, "flaky")
    conn.commit()
    job = claim(conn, "w1", "flaky")
    conn.commit()
    listener.drain()
    one(conn, "SELECT * FROM queuert.fail(job_id => %s, worker_id => 'w1', error => 'x',"
        " retry_at => now())", (job,))
    assert committed(conn, listener) == [("job_ready", "flaky")]
    assert claim(conn, "w1", "flaky") == job
    conn.commit()
    listener.drain()
    row = one(conn, "SELECT * FROM queuert.fail(job_id => %s, worker_id => 'w1', error => 'y')",
              (job,))
    assert row["status"] == "failed"
    assert committed(conn, listener) == []
    # retried → job_ready
    conn.execute("SELECT * FROM queuert.retry_jobs(%s)", ([job],))
    assert committed(conn, listener) == [("job_ready", "flaky")]


def test_retry_of_cancelled_job_notifies(conn: Conn, listener: Listener) -> None:
    chain = start(conn, "c")
    conn.commit()
    conn.execute("SELECT * FROM queuert.cancel_chains(%s)", ([chain],))
    assert committed(conn, listener) == [("job_ready", "c")]  # the start; cancel sends none
    conn.execute("SELECT * FROM queuert.retry_jobs(%s)", ([chain],))
    assert committed(conn, listener) == [("job_ready", "c")]


def test_trigger_notifies_job_ready(conn: Conn, listener: Listener) -> None:
    a = start(conn, "t1", schedule_after="1 hour")
    b = start(conn, "t1", schedule_after="2 hours")
    c = start(conn, "t2", schedule_after="1 hour")
    conn.commit()
    listener.drain()
    conn.execute("SELECT * FROM queuert.trigger_jobs(%s)", ([a, b, c],))
    assert sorted(committed(conn, listener)) == [("job_ready", "t1"), ("job_ready", "t2")]


def test_reap_notifies_job_ready_and_job_lost(conn: Conn, listener: Listener) -> None:
    j1 = start(conn, "slow")
    j2 = start(conn, "slow")
    conn.commit()
    conn.execute("SELECT * FROM queuert.claim('w1', max_jobs => 2, lease => '1 millisecond')")
    conn.commit()
    listener.drain()
    time.sleep(0.01)
    reaped = conn.execute("SELECT * FROM queuert.reap()").fetchall()
    assert {r["job_id"] for r in reaped} == {j1, j2}
    got = committed(conn, listener)
    assert sorted(got) == sorted(
        [("job_lost", str(j1)), ("job_lost", str(j2)), ("job_ready", "slow")]
    )


def test_reap_to_failed_notifies_job_lost_only(conn: Conn, listener: Listener) -> None:
    conn.execute("SELECT queuert.set_job_type(type_name => 'once', max_attempts => 1)")
    job = start(conn, "once")
    conn.commit()
    claim(conn, "w1", "once", lease="1 millisecond")
    conn.commit()
    listener.drain()
    time.sleep(0.01)
    assert [r["status"] for r in conn.execute("SELECT * FROM queuert.reap()")] == ["failed"]
    assert committed(conn, listener) == [("job_lost", str(job))]


# ------------------------------------------------------- chain_completed


def test_chain_completed_on_complete_not_on_continue_with(
    conn: Conn, listener: Listener
) -> None:
    chain = start(conn, "step-1")
    conn.commit()
    job = claim(conn, "w1", "step-1")
    conn.commit()
    listener.drain()
    nxt = one(conn, "SELECT * FROM queuert.continue_with(job_id => %s, worker_id => 'w1',"
              " type_name => 'step-2')", (job,))["id"]
    assert committed(conn, listener) == [("job_ready", "step-2")]
    assert claim(conn, "w1", "step-2") == nxt
    conn.commit()
    listener.drain()
    one(conn, "SELECT * FROM queuert.complete(job_id => %s, worker_id => 'w1')", (nxt,))
    # Payload is the chain id (the root's id), not the completed job's.
    assert committed(conn, listener) == [("chain_completed", str(chain))]


def test_complete_rolled_back_sends_nothing(conn: Conn, listener: Listener) -> None:
    blocker = start(conn, "b")
    start(conn, "w", blockers=[blocker])
    conn.commit()
    listener.drain()
    one(conn, "SELECT * FROM queuert.complete(job_id => %s, worker_id => NULL)", (blocker,))
    conn.rollback()
    assert listener.drain() == []


# -------------------------------------------------------------- job_lost


def _running(conn: Conn, listener: Listener, type_name: str) -> tuple[uuid.UUID, uuid.UUID]:
    chain = start(conn, type_name)
    conn.commit()
    job = claim(conn, "w1", type_name)
    conn.commit()
    listener.drain()
    return chain, job


def test_outside_complete_of_running_job_notifies_job_lost(
    conn: Conn, listener: Listener
) -> None:
    chain, job = _running(conn, listener, "approve")
    one(conn, "SELECT * FROM queuert.complete(job_id => %s, worker_id => NULL)", (job,))
    got = committed(conn, listener)
    assert sorted(got) == [("chain_completed", str(chain)), ("job_lost", str(job))]


def test_worker_complete_and_outside_complete_of_pending_job_send_no_job_lost(
    conn: Conn, listener: Listener
) -> None:
    _, job = _running(conn, listener, "normal")
    one(conn, "SELECT * FROM queuert.complete(job_id => %s, worker_id => 'w1')", (job,))
    assert [c for c, _ in committed(conn, listener)] == ["chain_completed"]
    pending = start(conn, "approve-later")
    conn.commit()
    listener.drain()
    one(conn, "SELECT * FROM queuert.complete(job_id => %s, worker_id => NULL)", (pending,))
    assert committed(conn, listener) == [("chain_completed", str(pending))]


def test_outside_continue_with_of_running_job_notifies_job_lost(
    conn: Conn, listener: Listener
) -> None:
    _, job = _running(conn, listener, "step")
    one(conn, "SELECT * FROM queuert.continue_with(job_id => %s, worker_id => NULL,"
        " type_name => 'step-next')", (job,))
    assert sorted(committed(conn, listener)) == [
        ("job_lost", str(job)),
        ("job_ready", "step-next"),
    ]


def test_outside_fail_of_running_job_notifies_job_lost(conn: Conn, listener: Listener) -> None:
    _, job = _running(conn, listener, "doomed")
    one(conn, "SELECT * FROM queuert.fail(job_id => %s, worker_id => NULL, error => 'stop')",
        (job,))
    assert sorted(committed(conn, listener)) == [("job_lost", str(job)), ("job_ready", "doomed")]


def test_cancel_of_running_job_notifies_job_lost(conn: Conn, listener: Listener) -> None:
    chain, job = _running(conn, listener, "cancel-me")
    idle = start(conn, "idle")
    conn.commit()
    listener.drain()
    conn.execute("SELECT * FROM queuert.cancel_chains(%s)", ([chain, idle],))
    assert committed(conn, listener) == [("job_lost", str(job))]


def test_delete_of_running_job_notifies_job_lost(conn: Conn, listener: Listener) -> None:
    chain, job = _running(conn, listener, "delete-me")
    idle = start(conn, "idle")
    conn.commit()
    listener.drain()
    conn.execute("SELECT * FROM queuert.delete_chains(%s)", ([chain, idle],))
    assert committed(conn, listener) == [("job_lost", str(job))]


def test_cancel_rolled_back_sends_nothing(conn: Conn, listener: Listener) -> None:
    chain, _ = _running(conn, listener, "keep")
    conn.execute("SELECT * FROM queuert.cancel_chains(%s)", ([chain],))
    conn.rollback()
    assert listener.drain() == []


# -------------------------------------------------------- custom schema


def test_notify_setting_selects_channels(conn: Conn, listener: Listener) -> None:
    """queuert.notify: 'none' is poll-only; a list keeps only those channels."""
    conn.execute("SET queuert.notify = 'none'")
    start(conn, "quiet")
    assert committed(conn, listener) == []

    conn.execute("SET queuert.notify = 'job_ready, job_lost'")
    job = start(conn, "half")
    conn.commit()
    assert listener.drain() == [("job_ready", "half")]
    assert claim(conn, "w1", "half") == job
    conn.commit()
    one(conn, "SELECT * FROM queuert.complete(job_id => %s, worker_id => 'w1')", (job,))
    assert committed(conn, listener) == []  # chain_completed is not in the list

    conn.execute("SET queuert.notify = 'all'")
    start(conn, "loud")
    assert committed(conn, listener) == [("job_ready", "loud")]


def test_job_ready_unblocked_selects_only_the_job_ready_of_unblocked_jobs(
    conn: Conn, listener: Listener
) -> None:
    """What a batching worker sets: job_lost plus the job_ready of jobs its
    completions unblock (it publishes the rest itself after commit)."""
    blocker = start(conn, "blocker")
    start(conn, "waiter", blockers=[blocker])
    conn.commit()
    listener.drain()
    conn.execute("SET queuert.notify = 'job_lost,job_ready_unblocked'")
    assert committed(conn, listener) == []
    plain = start(conn, "plain")  # job_ready of a new job: not selected
    assert committed(conn, listener) == []
    job = claim(conn, "w1", "blocker")
    one(conn, "SELECT * FROM queuert.complete(job_id => %s, worker_id => 'w1')", (job,))
    # the unblocked waiter is announced on job_ready; chain_completed is not selected
    assert committed(conn, listener) == [("job_ready", "waiter")]
    assert claim(conn, "w1", "plain") == plain
    one(conn, "SELECT * FROM queuert.complete(job_id => %s, worker_id => 'w1')", (plain,))
    assert committed(conn, listener) == []  # no dependents: nothing


def test_channels_follow_a_custom_schema(dsn: str, listener: Listener) -> None:
    migrate(dsn, schema="app_q")
    custom = Listener(dsn, schema="app_q")
    try:
        with psycopg.connect(dsn, row_factory=dict_row) as c:
            root = one(c, "SELECT * FROM app_q.start_chain(type_name => 'mail')")["id"]
            c.commit()
            job = one(c, "SELECT id FROM app_q.claim('w1')")["id"]
            c.commit()
            assert custom.drain() == [("job_ready", "mail")]
            one(c, "SELECT * FROM app_q.complete(job_id => %s, worker_id => NULL)", (job,))
            c.commit()
        assert sorted(custom.drain()) == [("chain_completed", str(root)), ("job_lost", str(job))]
        # Nothing leaked onto the default schema's channels.
        assert listener.drain() == []
    finally:
        custom.close()
