"""The kit's pytest plugin as an application sees it: a separate test project
with nothing but ``queuert`` installed (the ``pytest11`` entry point loads the
plugin), its own tables through ``queuert_setup``, run by a real pytest; and
the embedded server when no PostgreSQL answers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg

from queuert.embedded import server_answers
from queuert.testing import DatabaseFactory, TestServer

CONFTEST = '''
import os

import psycopg
import pytest


def pytest_sessionstart(session):
    with open("pid.txt", "w") as f:
        f.write(str(os.getpid()))


@pytest.fixture(scope="session")
def queuert_setup():
    def create_tables(dsn):
        with psycopg.connect(dsn) as conn:
            conn.execute("CREATE TABLE app_user (id int PRIMARY KEY, email text NOT NULL)")
    return create_tables
'''

TESTS = '''
import queuert
from queuert.testing import assert_chain_started, drain

welcome = queuert.JobType("welcome", input=int, output=str)
worker = queuert.Worker(poll_interval=0.2)


@worker.handler(welcome)
def send(job):
    return f"mail to {job.input}"


def signup(conn, user_id, email):
    with conn.transaction():
        conn.execute("INSERT INTO app_user VALUES (%s, %s)", (user_id, email))
        queuert.start_chain(conn, welcome, user_id)


def test_signup_starts_its_welcome_chain(queuert_conn):
    with queuert_conn.transaction():
        signup(queuert_conn, 1, "ada@example.com")
        assert_chain_started(queuert_conn, welcome, 1)


def test_the_worker_sends_it(queuert_dsn, queuert_conn):
    signup(queuert_conn, 2, "bob@example.com")
    result = drain(worker, dsn=queuert_dsn)
    assert result.outcomes == [("welcome", "completed")]
    assert result.attempts[0].output == "mail to 2"
'''


def test_a_user_test_suite_uses_the_plugin(base_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (tmp_path / "test_signup.py").write_text(textwrap.dedent(TESTS))
    env = {k: v for k, v in os.environ.items() if k != "QUEUERT_TEST_DSN"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--queuert-dsn", base_dsn,
         str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
    # the session dropped its template and every test database
    pid = (tmp_path / "pid.txt").read_text().strip()
    with psycopg.connect(base_dsn, autocommit=True) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname ~ %s", (f"^queuert_kit_(tpl|t)_{pid}($|_)",)
        ).fetchall()
    assert left == []


def test_without_a_server_the_kit_starts_the_embedded_one() -> None:
    server = TestServer(None, default_dsn="postgresql://postgres@127.0.0.1:1/postgres")
    try:
        assert server.source == "embedded"
        factory = DatabaseFactory(server.dsn)
        dsn = factory.create()
        with psycopg.connect(dsn) as conn:
            version = conn.execute("SHOW server_version_num").fetchone()
            assert version is not None and int(str(version[0])) // 10000 == 16
            assert conn.execute("SELECT count(*) FROM queuert.job").fetchone() == (0,)
        factory.close()
    finally:
        server.close()
    assert not server_answers(server.dsn)  # stopped, and its directory deleted
