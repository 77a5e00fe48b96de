"""queuert migrate|status|chain with --dsn sqlite:///PATH: their refusals
(the happy path runs in docs/cli.md, tests_py/test_cli_docs.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

from click.testing import CliRunner

from queuert._sqlite._statements import engine_dirs
from queuert.cli import cli
from queuert.migrate import load_migrations


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_migrate_twice_then_status_of_an_empty_file(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path}/app.db"
    applied = "".join(f"applied {m.name}\n" for m in load_migrations(engine_dirs()[1]))
    assert run("migrate", "--dsn", dsn) == (0, f"{applied}engine tables up to date in {dsn} (prefix queuert_)\n")
    assert run("migrate", "--dsn", dsn)[1].startswith("no new migrations")
    assert run("status", "--dsn", dsn) == (0, "no jobs in schema queuert\n")
    code, out = run("chain", str(uuid.UUID(int=1)), "--dsn", dsn)
    assert code == 1 and "not found" in out


def test_refusals(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path}/missing.db"
    code, out = run("status", "--dsn", missing)
    assert code == 1 and "no SQLite database at" in out and "queuert migrate" in out
    assert not (tmp_path / "missing.db").exists(), "status creates no file"

    dsn = f"sqlite:///{tmp_path}/app.db"
    code, out = run("migrate", "--dsn", dsn, "--grant-to", "app")
    assert code == 2 and "SQLite has no roles" in out
    assert not (tmp_path / "app.db").exists()

    run("migrate", "--dsn", dsn)
    code, out = run("status", "--dsn", dsn, "--schema", "jobs")
    assert code == 1 and f"queuert migrate --dsn {dsn} --schema jobs" in out

    code, out = run("migrate", "--dsn", "sqlite://app.db")
    assert code == 1 and "sqlite:///relative/path" in out
