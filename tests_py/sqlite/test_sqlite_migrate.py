"""queuert._sqlite.migrate: numbered, checksummed, immutable, idempotent,
serialised, refusing collisions, changing nothing on failure; the wheel
ships the SQLite engine files."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

import queuert._sqlite as qs
from queuert._sqlite._statements import engine_dirs, parse
from queuert._sqlite.migrate import created_names, split_statements
from queuert.migrate import ChecksumMismatchError, MigrationError, SchemaCollisionError

REPO = Path(__file__).resolve().parents[2]
MIGRATIONS = sorted(p.stem for p in (REPO / "sqlite" / "migrations").glob("*.sql"))


def names(path: Path | str) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}


def test_a_first_migrate_applies_everything_a_second_nothing(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    assert qs.migrate(path) == MIGRATIONS
    assert qs.migrate(f"sqlite:///{path}") == [], "idempotent (and a sqlite:/// URL works)"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        landed = conn.execute("SELECT version, name, length(checksum) FROM queuert_schema_migration").fetchall()
    assert landed == [(int(m[:4]), m, 64) for m in MIGRATIONS]
    assert {"queuert_job", "queuert_job_blocker", "queuert_job_type", "queuert_chain", "queuert_stats",
            "queuert_job_claim_idx", "queuert_job_blocker_chain_idx"} <= names(path)
    # 0002 resolves fan-in in the completing call's statements, not in triggers
    assert not {"queuert_job_chain_completed", "queuert_job_chain_end"} & names(path)


def test_another_prefix_installs_beside_the_first(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    qs.migrate(path)
    assert qs.migrate(path, schema="jobs") == MIGRATIONS
    conn = qs.connect(path)
    qs.start_chain(conn, "t", schema="jobs")
    assert conn.execute("SELECT count(*) FROM jobs_job").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM queuert_job").fetchone() == (0,)
    with pytest.raises(MigrationError):
        qs.migrate(path, schema="Bad-Name")


def test_an_edited_landed_migration_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    copy = tmp_path / "migrations"
    shutil.copytree(REPO / "sqlite" / "migrations", copy)
    qs.migrate(path, migrations_dir=copy)
    first = copy / f"{MIGRATIONS[0]}.sql"
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(ChecksumMismatchError):
        qs.migrate(path, migrations_dir=copy)


def test_a_new_migration_lands_and_a_failing_one_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    copy = tmp_path / "migrations"
    shutil.copytree(REPO / "sqlite" / "migrations", copy)
    qs.migrate(path, migrations_dir=copy)
    (copy / "9998_more.sql").write_text("CREATE TABLE {{ schema }}_extra (x INTEGER);\n")
    (copy / "9999_broken.sql").write_text("CREATE TABLE {{ schema }}_other (y INTEGER);\nSELECT * FROM nowhere;\n")
    before = names(path)
    with pytest.raises(MigrationError, match="9999_broken.sql"):
        qs.migrate(path, migrations_dir=copy)
    assert names(path) == before, "the failed run rolled back 9998 too"
    (copy / "9999_broken.sql").unlink()
    assert qs.migrate(path, migrations_dir=copy) == ["9998_more"]


def test_a_migration_this_package_does_not_know_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    qs.migrate(path)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO queuert_schema_migration (version, name, checksum) VALUES (9999, '9999_future', 'x')")
    with pytest.raises(MigrationError, match="9999_future"):
        qs.migrate(path)


def test_a_name_collision_is_refused_before_anything_changes(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE queuert_job (mine INTEGER)")
    with pytest.raises(SchemaCollisionError, match="queuert_job"):
        qs.migrate(path)
    assert names(path) == {"queuert_job"}


def test_a_connection_in_a_transaction_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "app.db", isolation_level=None)
    conn.execute("BEGIN")
    with pytest.raises(MigrationError, match="commit or roll back"):
        qs.migrate(conn)
    conn.execute("ROLLBACK")
    assert qs.migrate(conn) == MIGRATIONS
    conn.close()


def test_concurrent_migrators_apply_once(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(qs.migrate(path))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [[], [], [], MIGRATIONS]


def test_the_script_splitter_keeps_triggers_whole() -> None:
    script = (
        "CREATE TABLE t (x);\n-- a comment; with a semicolon\n"
        "CREATE TRIGGER g AFTER INSERT ON t BEGIN\n  UPDATE t SET x = 1;\n  UPDATE t SET x = 2;\nEND;\n"
        "INSERT INTO t VALUES (';');\n"
    )
    parts = split_statements(script)
    assert len(parts) == 3 and parts[1].startswith("-- a comment") and parts[1].endswith("END;")
    with pytest.raises(MigrationError):
        split_statements("CREATE TABLE t (x)")
    assert "queuert_job_chain_end" in created_names([(REPO / "sqlite/migrations/0001_init.sql").read_text()], "queuert")


def test_every_statement_file_parses_into_single_statements() -> None:
    sql_dir, _ = engine_dirs()
    found: dict[str, str] = {}
    for path in sorted(sql_dir.glob("*.sql")):
        for name, body in parse(path.read_text(), path.name).items():
            assert name not in found, f"{name} defined twice"
            assert sqlite3.complete_statement(body + ";"), name
            found[name] = body
    with pytest.raises(MigrationError):
        parse("SELECT 1;\n-- name: x\nSELECT 2", "bad.sql")
    with pytest.raises(MigrationError):
        parse("-- name: x\nSELECT 1; SELECT 2", "bad.sql")


def test_the_wheel_ships_the_sqlite_engine(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path), str(REPO / "python_client")],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("queuert-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = set(zf.namelist())
        for folder in ("migrations", "sql"):
            for f in (REPO / "sqlite" / folder).glob("*.sql"):
                name = f"queuert/_sqlite/_engine/{folder}/{f.name}"
                assert name in shipped
                assert zf.read(name) == f.read_bytes(), "byte for byte: checksums must match"
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run(
        [sys.executable, "-c",
         "import queuert._sqlite as qs; print(qs.migrate('app.db')); c = qs.connect('app.db');"
         "print(qs.start_chain(c, 't')['status']); print(qs.__file__)"],
        cwd=elsewhere, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout.split("\n")
    assert out[:2] == [str(MIGRATIONS), "pending"]
    assert Path(out[2]).is_relative_to(site), "the installed copy, not the checkout"
