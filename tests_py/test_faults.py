"""The fault tooling itself (tests_py/faults.py, tests_py/pgcluster.py):
each fault happens for real, and the tests see both sides of it: what the
client experienced and what the server did."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from faults import FaultProxy, terminate_when, wait_for_backend
from pgcluster import TempCluster


@pytest.fixture
def proxy(dsn: str) -> Iterator[FaultProxy]:
    with FaultProxy(dsn) as p:
        yield p


@pytest.fixture
def table(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE fault_t (x int)")
    return dsn


def rows(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as c:
        return [r[0] for r in c.execute("SELECT x FROM fault_t ORDER BY x")]


def in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_the_proxy_forwards_until_told_otherwise(table: str, proxy: FaultProxy) -> None:
    with psycopg.connect(proxy.dsn(table), autocommit=True) as c:
        c.execute("INSERT INTO fault_t VALUES (1)")
        assert c.execute("SELECT x FROM fault_t").fetchall() == [(1,)]
        big = c.execute("SELECT repeat('x', 1000000)").fetchone()
        assert big is not None and len(big[0]) == 1_000_000
    assert proxy.accepted == 1


def test_lose_commit_reply_in_autocommit(table: str, proxy: FaultProxy) -> None:
    fault = proxy.lose_commit_reply(b"VALUES (7)")
    with psycopg.connect(proxy.dsn(table), autocommit=True) as c:
        c.execute("INSERT INTO fault_t VALUES (1)")  # not the pattern: forwarded
        with pytest.raises(psycopg.OperationalError):
            c.execute("INSERT INTO fault_t VALUES (7)")
    assert fault.fired.is_set() and proxy.lost_replies == 1
    assert rows(table) == [1, 7]  # it committed; the client never heard


def test_lose_commit_reply_of_a_transaction(table: str, proxy: FaultProxy) -> None:
    fault = proxy.lose_commit_reply(b"VALUES (8)")
    c = psycopg.connect(proxy.dsn(table))
    try:
        c.execute("INSERT INTO fault_t VALUES (8)")  # its reply arrives: the transaction is open
        assert c.execute("SELECT count(*) FROM fault_t").fetchone() == (1,)
        assert not fault.fired.is_set()
        with pytest.raises(psycopg.OperationalError):
            c.commit()
    finally:
        c.close()
    assert fault.fired.is_set()
    assert rows(table) == [8]


def test_cut_before_the_statement_reaches_the_server(table: str, proxy: FaultProxy) -> None:
    fault = proxy.cut_before(b"VALUES (9)")
    with psycopg.connect(proxy.dsn(table), autocommit=True) as c:
        with pytest.raises(psycopg.OperationalError):
            c.execute("INSERT INTO fault_t VALUES (9)")
    assert fault.fired.is_set()
    assert rows(table) == []


def test_stall_replies_until_released(table: str, proxy: FaultProxy) -> None:
    marker = f"stalled-{uuid.uuid4().hex}"
    fault = proxy.stall_replies(marker.encode())
    conn = psycopg.connect(proxy.dsn(table), autocommit=True)
    try:
        t, out = in_thread(lambda: conn.execute(f"INSERT INTO fault_t SELECT 3 /* {marker} */").rowcount)
        assert fault.wait(30)  # the server answered in full ...
        assert rows(table) == [3]
        assert t.is_alive() and out == {}  # ... and the client is still waiting
        fault.release()
        t.join(30)
        assert out == {"result": 1}
        assert conn.execute("SELECT 42").fetchone() == (42,)  # and the link works on
    finally:
        conn.close()


def test_freeze_makes_connections_half_open_and_cut_all_ends_them(table: str, proxy: FaultProxy) -> None:
    conn = psycopg.connect(proxy.dsn(table), autocommit=True)
    try:
        proxy.freeze()
        marker = f"frozen-{uuid.uuid4().hex}"
        t, out = in_thread(lambda: conn.execute(f"SELECT 1 /* {marker} */").fetchone())
        # the query was read and dropped: the server never sees it, the client waits
        while proxy.dropped == 0:
            t.join(0.02)
        with psycopg.connect(table, autocommit=True) as admin:
            seen = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s",
                                 (f"%{marker}%",)).fetchone()
        assert seen == (0,) and t.is_alive()
        # a new connection is forwarded
        with psycopg.connect(proxy.dsn(table), autocommit=True) as fresh:
            assert fresh.execute("SELECT 1").fetchone() == (1,)
        proxy.cut_all()
        t.join(30)
        assert isinstance(out.get("error"), psycopg.OperationalError)
    finally:
        conn.close()


def test_terminate_when_a_backend_runs_a_statement(table: str) -> None:
    marker = f"victim-{uuid.uuid4().hex}"
    conn = psycopg.connect(table, autocommit=True)
    victim = conn.info.backend_pid
    try:
        t, out = in_thread(lambda: conn.execute(f"SELECT pg_sleep(120) /* {marker} */"))
        pid = terminate_when(table, f"%{marker}%")
        t.join(30)
        assert pid == victim
        assert isinstance(out.get("error"), psycopg.errors.AdminShutdown)
    finally:
        conn.close()


def test_wait_for_backend_sees_a_lock_wait(table: str) -> None:
    """A statement blocked on a lock the test holds: the moment to strike."""
    marker = f"blocked-{uuid.uuid4().hex}"
    holder = psycopg.connect(table)
    waiter = psycopg.connect(table, autocommit=True)
    try:
        holder.execute("LOCK TABLE fault_t IN ACCESS EXCLUSIVE MODE")
        t, out = in_thread(lambda: waiter.execute(f"INSERT INTO fault_t VALUES (5) /* {marker} */"))
        pid = wait_for_backend(table, f"%{marker}%")
        with psycopg.connect(table, autocommit=True) as admin:
            wait = admin.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        assert wait == ("Lock",)
        holder.rollback()
        t.join(30)
        assert "error" not in out
    finally:
        holder.close()
        waiter.close()
    assert rows(table) == [5]


def test_temp_cluster_crash_keeps_committed_rows_and_loses_the_rest() -> None:
    with TempCluster(prefix="queuert-fault-test-") as pg:
        with psycopg.connect(pg.dsn, autocommit=True) as c:
            c.execute("CREATE TABLE t (x int)")
            c.execute("INSERT INTO t VALUES (1)")
        open_tx = psycopg.connect(pg.dsn)
        open_tx.execute("INSERT INTO t VALUES (2)")  # never committed
        pg.crash()
        with pytest.raises(psycopg.OperationalError):
            open_tx.execute("SELECT 1")
        open_tx.close()
        with psycopg.connect(pg.dsn) as c:
            assert c.execute("SELECT x FROM t").fetchall() == [(1,)]
        assert pg.restarts == 1
        root = pg.root
        assert root is not None and root.exists()
    assert not root.exists()


def test_a_cluster_whose_owner_was_killed_is_swept_by_the_next() -> None:
    """A harness killed with SIGKILL cannot stop its cluster; the next
    TempCluster of the same prefix stops and removes it."""
    prefix = f"queuert-orphan-{uuid.uuid4().hex[:8]}-"
    code = (
        f"import sys, time; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        f"from pgcluster import TempCluster\n"
        f"pg = TempCluster(prefix={prefix!r}); pg.create(); pg.start()\n"
        f"print(pg.root, pg.port, flush=True); time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        root_text, port = child.stdout.readline().split()
    finally:
        child.kill()
        child.wait()
    root = Path(root_text)
    orphan_dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5"
    with psycopg.connect(orphan_dsn) as c:  # still serving: nobody stopped it
        assert c.execute("SELECT 1").fetchone() == (1,)
    TempCluster(prefix=prefix).sweep_orphans()
    assert not root.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(orphan_dsn)
