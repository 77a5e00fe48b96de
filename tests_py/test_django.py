"""queuert.contrib.django, in the example project examples/django_project run
by its own manage.py against a fresh database of the real PostgreSQL:
queuert_migrate, a signup that commits (exactly one job) or rolls back (no
job, no member) on Django's own connection inside transaction.atomic(), and
queuert_worker running the handler that uses the ORM. The settings helpers
are checked against Django's own settings machinery."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from queuert.testing import assert_chain_started, started_chains

PROJECT = Path(__file__).resolve().parents[1] / "examples" / "django_project"


def manage(dsn: str, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": dsn, "PYTHONPATH": str(PROJECT),
           "DJANGO_SETTINGS_MODULE": "shop.settings"}
    proc = subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), *args],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, f"manage.py {args}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture
def shop(new_database: Callable[[], str]) -> str:
    dsn = new_database()
    manage(dsn, "migrate", "--verbosity", "0")
    return dsn


def counts(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM signups_member), (SELECT count(*) FROM queuert.job)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_queuert_migrate_reuses_the_default_database(shop: str) -> None:
    first = manage(shop, "queuert_migrate")
    assert "applied 0001_init" in first.stdout
    assert "engine SQL up to date in schema queuert" in first.stdout
    assert "no new migrations" in manage(shop, "queuert_migrate").stdout
    with psycopg.connect(shop) as conn:
        assert conn.execute("SELECT to_regclass('queuert.job') IS NOT NULL").fetchone() == (True,)


def test_commit_leaves_exactly_one_job_and_rollback_none(shop: str) -> None:
    manage(shop, "queuert_migrate")

    ok = manage(shop, "signup", "ada@example.com")
    assert ok.stdout.startswith("member ")
    assert counts(shop) == (1, 1)

    failed = manage(shop, "signup", "bob@example.com", "--fail", check=False)
    assert failed.returncode != 0 and "payment declined" in failed.stderr
    assert counts(shop) == (1, 1)  # neither bob nor his job

    with psycopg.connect(shop, autocommit=True) as conn:
        job = assert_chain_started(conn, "send-welcome-email", count=1)
        member_id = conn.execute("SELECT id FROM signups_member WHERE email = 'ada@example.com'").fetchone()
        assert member_id is not None and job.input == {"member_id": member_id[0]}


def test_queuert_worker_runs_the_handlers_on_the_django_database(shop: str) -> None:
    manage(shop, "queuert_migrate")
    manage(shop, "signup", "cy@example.com")
    env = {**os.environ, "DATABASE_URL": shop, "PYTHONPATH": str(PROJECT),
           "DJANGO_SETTINGS_MODULE": "shop.settings"}
    worker = subprocess.Popen(
        [sys.executable, str(PROJECT / "manage.py"), "queuert_worker", "--concurrency", "2"],
        cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        with psycopg.connect(shop, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while True:
                (status,) = started_chains(conn, "send-welcome-email")
                if status.status == "completed" or worker.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert status.status == "completed", status
            (output,) = conn.execute("SELECT output FROM queuert.job").fetchone() or (None,)
            assert output == "welcomed cy@example.com"
            welcomed = conn.execute("SELECT welcomed_at IS NOT NULL FROM signups_member").fetchone()
            assert welcomed == (True,)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, out


def test_the_dsn_comes_from_databases(shop: str) -> None:
    script = (
        "from queuert.contrib.django import conninfo, schema, worker_target; "
        "print(conninfo()); print(schema()); print(worker_target())"
    )
    out = manage(shop, "shell", "-v", "0", "-c", script).stdout.splitlines()
    got, want = conninfo_to_dict(out[0]), conninfo_to_dict(shop)
    assert got["dbname"] == want["dbname"] and got.get("host") == want.get("host")
    assert got["application_name"] == "shop"  # a libpq OPTION carried over
    assert out[1:] == ["queuert", "signups.jobs:worker"]


def test_settings_mistakes_are_named(shop: str) -> None:
    bad = manage(
        shop, "shell", "-c",
        "from django.conf import settings; settings.QUEUERT = {'SCHEMAS': 'x'}; "
        "from queuert.contrib.django import conninfo; conninfo()",
        check=False,
    )
    assert bad.returncode != 0 and "unknown key(s) ['SCHEMAS']" in bad.stderr
    no_worker = manage(
        shop, "shell", "-c",
        "from django.conf import settings; settings.QUEUERT = {}; "
        "from django.core.management import call_command; call_command('queuert_worker')",
        check=False,
    )
    assert no_worker.returncode != 0 and "name the worker" in no_worker.stderr


def test_conninfo_from_settings_keeps_libpq_options_only() -> None:
    from queuert.contrib.django import conninfo_from_settings

    dsn = conninfo_from_settings({
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop", "USER": "app", "PASSWORD": "s3cret", "HOST": "db.internal", "PORT": 6432,
        "OPTIONS": {"sslmode": "require", "isolation_level": 2, "server_side_binding": True,
                    "options": "-c statement_timeout=5s"},
    })
    assert conninfo_to_dict(dsn) == {
        "dbname": "shop", "user": "app", "password": "s3cret", "host": "db.internal", "port": "6432",
        "sslmode": "require", "options": "-c statement_timeout=5s",
    }
    with pytest.raises(Exception, match="needs a PostgreSQL database"):
        conninfo_from_settings({"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"})


def test_the_integrations_guides_shell_block_runs_in_the_project(shop: str) -> None:
    """docs/integrations.md's ```sh block, line by line in the example
    project: queuert_migrate installs the schema; queuert_worker starts on
    the project's worker (then stops on SIGTERM). Every option its comment
    names is one the command accepts."""
    doc = (PROJECT.parents[1] / "docs" / "integrations.md").read_text()
    (block,) = re.findall(r"^```sh\n(.*?)^```$", doc, flags=re.S | re.M)
    env = {**os.environ, "DATABASE_URL": shop, "PYTHONPATH": str(PROJECT),
           "DJANGO_SETTINGS_MODULE": "shop.settings",
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    lines = [line.partition("#") for line in block.splitlines() if line.strip()]
    assert [cmd.split()[:3] for cmd, _, _ in lines] == [
        ["python", "manage.py", "queuert_migrate"], ["python", "manage.py", "queuert_worker"],
    ]
    for cmd, _, comment in lines:
        command = cmd.split()[2]
        usage = manage(shop, command, "--help").stdout
        for option in re.findall(r"--[a-z-]+", comment):
            assert option in usage, f"{command} has no {option}:\n{usage}"
        if command == "queuert_migrate":
            out = subprocess.run(["bash", "-euo", "pipefail", "-c", cmd], cwd=PROJECT, env=env,
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 0 and "applied 0001_init" in out.stdout, out.stdout + out.stderr
            continue
        worker = subprocess.Popen(["bash", "-c", f"exec {cmd}"], cwd=PROJECT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert worker.stdout is not None
            seen: list[str] = []
            for line in worker.stdout:  # ends when the process does
                seen.append(line)
                if "starting (" in line:
                    break
            assert seen and "starting (" in seen[-1], "".join(seen)
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
            rest, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0, "".join(seen) + rest
