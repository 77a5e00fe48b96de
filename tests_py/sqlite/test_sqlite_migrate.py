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


def test_upgrade_to_0003_keeps_every_row_and_edge(tmp_path: Path) -> None:
    """A file at 0002 with jobs in every status, blocker edges, a continuation
    and a dedup key upgrades to 0003 (the job table rebuilt with its status
    CHECK written as equalities): every row and edge as it was, even on a
    connection enforcing foreign keys (the old table's drop must not cascade
    to job_blocker), the CHECK still refuses an unknown status, and the
    rebuilt table's index, trigger and views work."""
    path = tmp_path / "app.db"
    old = tmp_path / "migrations"
    old.mkdir()
    for name in MIGRATIONS:
        if int(name[:4]) < 3:
            shutil.copy(REPO / "sqlite" / "migrations" / f"{name}.sql", old / f"{name}.sql")
    assert qs.migrate(path, migrations_dir=old) == ["0001_init", "0002_explicit_fan_in"]
    conn = qs.connect(path)
    qs.set_job_type(conn, "flaky", max_attempts=1)
    blocker = qs.start_chain(conn, "blocker", {"b": 1})
    waiting = qs.start_chain(conn, "fan_in", None, blockers=[blocker["chain_id"]])
    qs.start_chain(conn, "deduped", {"k": 1}, dedup_key="once")
    stepped = qs.start_chain(conn, "step", {"s": 1})
    (step,) = qs.claim(conn, "w", ["step"])
    qs.continue_with(conn, step["id"], "w", "step2", {"s": 2}, attempt=step["attempt"])
    finished = qs.start_chain(conn, "done", None)
    qs.complete(conn, finished["id"], None, {"ok": True})
    flaky = qs.start_chain(conn, "flaky", None)
    (job,) = qs.claim(conn, "w", ["flaky"])
    qs.fail(conn, job["id"], "w", "boom", attempt=job["attempt"])
    cancelled = qs.start_chain(conn, "gone", None)
    qs.cancel_chains(conn, [cancelled["chain_id"]])
    qs.start_chain(conn, "held", None)
    qs.claim(conn, "w", ["held"])  # running, with a lease
    before = conn.execute("SELECT * FROM queuert_job ORDER BY seq").fetchall()
    edges = conn.execute("SELECT * FROM queuert_job_blocker ORDER BY job_id, position").fetchall()
    statuses = {row[8] for row in before}
    assert statuses == {"pending", "blocked", "running", "completed", "failed", "cancelled"}
    assert edges
    conn.close()

    with sqlite3.connect(path, isolation_level=None) as mine:
        mine.execute("PRAGMA foreign_keys = ON")
        assert qs.migrate(mine) == ["0003_status_check"]
        assert mine.execute("PRAGMA foreign_keys").fetchone() == (1,), "restored after the migration"
    conn = qs.connect(path)
    assert conn.execute("SELECT * FROM queuert_job ORDER BY seq").fetchall() == before
    assert conn.execute("SELECT * FROM queuert_job_blocker ORDER BY job_id, position").fetchall() == edges
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    table_sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'queuert_job'").fetchone()[0]
    assert "status IN" not in table_sql and "status = 'cancelled'" in table_sql
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute("UPDATE queuert_job SET status = 'paused' WHERE id = ?", (str(finished["id"]),))
    # the indexes, the trigger and the views, on the rebuilt table
    assert {"queuert_job_claim_idx", "queuert_job_lease_idx", "queuert_job_dedup_idx",
            "queuert_job_chain_position_idx", "queuert_job_chain_root_created_idx",
            "queuert_job_blocker_marks_chain"} <= names(path)
    assert conn.execute(
        "SELECT tbl_name FROM sqlite_master WHERE name = 'sqlite_autoindex_queuert_job_1'"
    ).fetchone() == ("queuert_job",), "the unique index of id, under its usual name"
    assert [j["type_name"] for j in qs.claim(conn, "w2", ["step2"])] == ["step2"]
    (first,) = qs.claim(conn, "w2", ["blocker"])
    qs.complete(conn, first["id"], "w2", {"b": "done"}, attempt=first["attempt"])
    assert qs.chain(conn, waiting["chain_id"])["status"] == "pending", "fan-in resolved after the upgrade"
    late = qs.start_chain(conn, "late_blocker", None)
    qs.start_chain(conn, "late_fan_in", None, blockers=[late["chain_id"]])
    assert conn.execute("SELECT has_dependents FROM queuert_job WHERE id = ?", (str(late["id"]),)).fetchone() == (1,)
    assert qs.start_chain(conn, "deduped", {"k": 2}, dedup_key="once")["deduplicated"]
    assert {r["status"] for r in qs.stats(conn)} >= {"completed", "failed", "cancelled", "running"}
    assert qs.chain(conn, stepped["chain_id"])["status"] == "running"
    assert qs.chain(conn, flaky["chain_id"])["status"] == "failed"
    conn.close()
