"""The migration runner and the `queuert` CLI, against a real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from typing import Any
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import make_conninfo

from queuert import migrate as migrate_mod
from queuert.cli import cli
from queuert.migrate import (
    ChecksumMismatchError,
    InvalidSchemaNameError,
    MigrationError,
    SchemaCollisionError,
    migrate,
    resource_dirs,
)

SQL_DIR, MIGRATIONS_DIR = resource_dirs()
ALL_MIGRATIONS = sorted(p.stem for p in MIGRATIONS_DIR.glob("*.sql"))


def scalar(dsn: str, query: str, params: tuple[object, ...] = ()) -> object:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(query, params).fetchone()  # type: ignore[arg-type]
        assert row is not None
        return row[0]


def catalog_snapshot(dsn: str) -> list[tuple[str, ...]]:
    """Every user-visible object outside the system schemas."""
    with psycopg.connect(dsn, autocommit=True) as c:
        rels = c.execute(
            "SELECT 'rel', n.nspname::text, c.relname::text FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
            "   AND n.nspname NOT LIKE 'pg_toast%%'"
        ).fetchall()
        procs = c.execute(
            "SELECT 'proc', n.nspname::text, p.proname::text FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        nsps = c.execute("SELECT 'nsp', nspname::text, '' FROM pg_namespace").fetchall()
    return sorted(rels + procs + nsps)  # type: ignore[arg-type]


@pytest.fixture
def empty_db(new_database: Callable[[], str]) -> str:
    return new_database()


def copy_sql_tree(tmp_path: Path) -> tuple[Path, Path]:
    sql_dir = tmp_path / "sql"
    mig_dir = tmp_path / "migrations"
    shutil.copytree(SQL_DIR, sql_dir)
    shutil.copytree(MIGRATIONS_DIR, mig_dir)
    return sql_dir, mig_dir


# The newest migration today's sql/ cannot do without: it reads and writes
# job.chain_trace_context (0007), so it cannot run on a database at an
# older migration. The upgrade tests build their older database with the
# engine of that time: sql/ as committed just before 0007 landed (which also
# predates 0006).
SQL_NEEDS = "0007_trace_context"


def sql_tree_before(tmp_path: Path, migration: str = SQL_NEEDS) -> Path:
    """sql/ as committed just before ``migration`` was added (the git
    history of this checkout)."""
    root = SQL_DIR.parent
    log = subprocess.run(
        ["git", "-C", str(root), "log", "--diff-filter=A", "--format=%H", "--", f"migrations/{migration}.sql"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert log, f"no commit adds migrations/{migration}.sql in {root}: the upgrade tests need git history"
    old = tmp_path / "old-engine"
    old.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", f"{log[-1]}^", "sql"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    return old / "sql"


def keep_migrations(tmp_path: Path, sql_dir: Path, mig_dir: Path, n: int) -> Path:
    """The first ``n`` migrations only; returns the sql/ to install with
    them: today's, or before 0007 the engine of that time
    (``sql_tree_before``). A test on a database before 0006 takes jobs by
    hand (``take_by_hand``), as it did while today's sql/ ran there."""
    for later in sorted(mig_dir.glob("*.sql"))[n:]:
        later.unlink()
    if n < 7:
        return sql_tree_before(tmp_path)
    return sql_dir


def take_by_hand(conn: psycopg.Connection[Any], type_name: str, worker: str) -> uuid.UUID | None:
    """What claim('w', ARRAY[type_name]) did before migration 0006."""
    row = conn.execute(
        "UPDATE queuert.job SET status = 'running', attempt = attempt + 1, leased_by = %s,"
        " leased_until = clock_timestamp() + interval '1 minute'"
        " WHERE id = (SELECT id FROM queuert.job WHERE status = 'pending' AND type_name = %s"
        " ORDER BY priority DESC, scheduled_at, seq LIMIT 1) RETURNING id",
        (worker, type_name),
    ).fetchone()
    return None if row is None else row[0]


# --------------------------------------------------------------------- basics


def test_first_run_applies_all_and_second_run_applies_nothing(empty_db: str) -> None:
    assert ALL_MIGRATIONS, "the repository ships at least one migration"
    assert migrate(empty_db) == ALL_MIGRATIONS
    with psycopg.connect(empty_db, autocommit=True) as c:
        landed = c.execute(
            "SELECT name, checksum FROM queuert.schema_migration ORDER BY version"
        ).fetchall()
        first_applied_at = c.execute("SELECT max(applied_at) FROM queuert.schema_migration").fetchone()
    assert [n for n, _ in landed] == ALL_MIGRATIONS
    assert all(len(str(ck)) == 64 for _, ck in landed)

    assert migrate(empty_db) == []
    with psycopg.connect(empty_db, autocommit=True) as c:
        again = c.execute(
            "SELECT name, checksum FROM queuert.schema_migration ORDER BY version"
        ).fetchall()
        assert c.execute("SELECT max(applied_at) FROM queuert.schema_migration").fetchone() == first_applied_at
        # the engine is usable after the re-run (sql/ was re-applied, not dropped)
        assert c.execute("SELECT to_regclass('queuert.job') IS NOT NULL").fetchone() == (True,)
        assert c.execute(
            "SELECT count(*) > 0 FROM pg_proc WHERE pronamespace = 'queuert'::regnamespace"
        ).fetchone() == (True,)
    assert again == landed


def test_the_tracking_table_has_the_documented_columns(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        cols = c.execute(
            "SELECT column_name::text, data_type::text FROM information_schema.columns"
            " WHERE table_schema = 'queuert' AND table_name = 'schema_migration'"
            " ORDER BY ordinal_position"
        ).fetchall()
    assert cols == [
        ("version", "integer"),
        ("name", "text"),
        ("checksum", "text"),
        ("applied_at", "timestamp with time zone"),
    ]


def test_engine_sql_changes_apply_without_a_new_migration(empty_db: str, tmp_path: Path) -> None:
    sql_dir, mig_dir = copy_sql_tree(tmp_path)
    migrate(empty_db, sql_dir=sql_dir, migrations_dir=mig_dir)
    (sql_dir / "999_extra.sql").write_text(
        "CREATE OR REPLACE FUNCTION {{ schema }}.extra_probe() RETURNS text\n"
        "LANGUAGE sql AS $$ SELECT '{{ schema }}:100%' $$;\n"
    )
    assert migrate(empty_db, sql_dir=sql_dir, migrations_dir=mig_dir) == []
    # placeholder replaced everywhere, '%' left alone
    assert scalar(empty_db, "SELECT queuert.extra_probe()") == "queuert:100%"


def test_upgrade_to_0002_keeps_existing_chains_whole(empty_db: str, tmp_path: Path) -> None:
    """A database at 0001 with chains (roots in the full chain-position
    index, version 4 ids) upgrades to 0002: rows untouched, the index
    partial, every chain's tail still found, later positions still unique."""
    sql_dir, mig_dir = copy_sql_tree(tmp_path)
    sql_dir = keep_migrations(tmp_path, sql_dir, mig_dir, 1)
    assert migrate(empty_db, sql_dir=sql_dir, migrations_dir=mig_dir) == ["0001_init"]
    upgraded = False

    def step(conn: psycopg.Connection, type_name: str, then: str | None) -> None:
        if upgraded:
            row = conn.execute("SELECT id FROM queuert.claim('w', ARRAY[%s])", (type_name,)).fetchone()
            job = None if row is None else row[0]
        else:
            job = take_by_hand(conn, type_name, "w")
        assert job is not None
        if then is None:
            conn.execute("SELECT * FROM queuert.complete(%s, 'w')", (job,))
        else:
            conn.execute("SELECT * FROM queuert.continue_with(%s, 'w', %s)", (job, then))

    a, b, c = (uuid.uuid4() for _ in range(3))  # version 4, as before 0002
    with psycopg.connect(empty_db, autocommit=True) as conn:
        for cid, type_name in ((a, "a"), (b, "b"), (c, "c")):
            conn.execute("SELECT * FROM queuert.start_chain(%s, id => %s)", (type_name, cid))
        step(conn, "a", "a2")
        step(conn, "a2", "a3")  # chain a: 3 jobs, the last pending
        step(conn, "b", "b2")
        step(conn, "b2", None)  # chain b: 2 jobs, completed
        rows = "SELECT id, chain_id, chain_index, type_name, status::text FROM queuert.job ORDER BY id"
        before = conn.execute(rows).fetchall()

    assert migrate(empty_db)[0] == "0002_root_outside_chain_position"  # and any later ones
    upgraded = True
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert conn.execute(rows).fetchall() == before
        predicate = conn.execute(
            "SELECT pg_get_expr(indpred, indrelid) FROM pg_index"
            " WHERE indexrelid = 'queuert.job_chain_position_idx'::regclass"
        ).fetchone()
        assert predicate == ("(chain_index > 0)",)
        chains = conn.execute(
            "SELECT chain_id, job_count, current_type_name, status::text FROM queuert.chain"
            " WHERE chain_id = ANY(%s) ORDER BY job_count",
            ([a, b, c],),
        ).fetchall()
        assert chains == [(c, 1, "c", "pending"), (b, 2, "b2", "completed"), (a, 3, "a3", "pending")]
        step(conn, "a3", "a4")  # an old chain goes on after the upgrade
        jobs = conn.execute("SELECT chain_index, type_name FROM queuert.chain_jobs(%s)", (a,)).fetchall()
        assert jobs == [(0, "a"), (1, "a2"), (2, "a3"), (3, "a4")]
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO queuert.job (id, type_name, chain_id, chain_type_name, chain_index,"
                " status, scheduled_at) VALUES (gen_random_uuid(), 'x', %s, 'a', 1, 'pending', now())",
                (a,),
            )


# ------------------------------------------------------------ immutability


def test_a_changed_landed_migration_is_an_error_and_is_not_rerun(empty_db: str) -> None:
    migrate(empty_db)
    first = ALL_MIGRATIONS[0]
    with psycopg.connect(empty_db, autocommit=True) as c:
        c.execute(
            "UPDATE queuert.schema_migration SET checksum = 'tampered' WHERE name = %s", (first,)
        )
        before = c.execute("SELECT * FROM queuert.schema_migration ORDER BY version").fetchall()
    snapshot = catalog_snapshot(empty_db)

    with pytest.raises(ChecksumMismatchError) as err:
        migrate(empty_db)
    assert first in str(err.value)
    assert err.value.names == [first]

    with psycopg.connect(empty_db, autocommit=True) as c:
        after = c.execute("SELECT * FROM queuert.schema_migration ORDER BY version").fetchall()
    assert after == before  # not re-run, not re-recorded
    assert catalog_snapshot(empty_db) == snapshot


def test_an_edited_migration_file_is_refused(empty_db: str, tmp_path: Path) -> None:
    sql_dir, mig_dir = copy_sql_tree(tmp_path)
    migrate(empty_db, sql_dir=sql_dir, migrations_dir=mig_dir)
    target = mig_dir / f"{ALL_MIGRATIONS[0]}.sql"
    target.write_text(target.read_text() + "\nCREATE TABLE {{ schema }}.sneaky (x int);\n")
    with pytest.raises(ChecksumMismatchError):
        migrate(empty_db, sql_dir=sql_dir, migrations_dir=mig_dir)
    assert scalar(empty_db, "SELECT to_regclass('queuert.sneaky') IS NULL") is True


def test_a_new_migration_is_applied_once(empty_db: str, tmp_path: Path) -> None:
    sql_dir, mig_dir = copy_sql_tree(tmp_path)
    migrate(empty_db, sql_dir=sql_dir, migrations_dir=mig_dir)
    (mig_dir / "9000_probe.sql").write_text("CREATE TABLE {{ schema }}.probe (x int);\n")
    assert migrate(empty_db, sql_dir=sql_dir, migrations_dir=mig_dir) == ["9000_probe"]
    assert migrate(empty_db, sql_dir=sql_dir, migrations_dir=mig_dir) == []
    assert scalar(empty_db, "SELECT to_regclass('queuert.probe') IS NOT NULL") is True


def test_a_database_newer_than_the_package_is_refused(empty_db: str) -> None:
    migrate(empty_db)
    with psycopg.connect(empty_db, autocommit=True) as c:
        c.execute(
            "INSERT INTO queuert.schema_migration (version, name, checksum)"
            " VALUES (9999, '9999_future', 'x')"
        )
    with pytest.raises(MigrationError, match="9999_future"):
        migrate(empty_db)


def test_a_failing_file_changes_nothing_and_names_the_file(empty_db: str, tmp_path: Path) -> None:
    sql_dir, mig_dir = copy_sql_tree(tmp_path)
    (sql_dir / "999_broken.sql").write_text("CREATE FUNCTION {{ schema }}.broken( RETURNS;\n")
    snapshot = catalog_snapshot(empty_db)
    with pytest.raises(MigrationError, match="999_broken.sql"):
        migrate(empty_db, sql_dir=sql_dir, migrations_dir=mig_dir)
    assert catalog_snapshot(empty_db) == snapshot
    assert scalar(empty_db, "SELECT to_regnamespace('queuert') IS NULL") is True


# --------------------------------------------------------------- concurrency


def test_racing_migrators_apply_once(empty_db: str) -> None:
    n = 4
    results: list[list[str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    # Hold the migration lock so every migrator is provably waiting on it at
    # the same moment, then let them all go.
    holder = psycopg.connect(empty_db, autocommit=False)
    with holder.cursor() as cur:
        migrate_mod._lock(cur, "queuert")  # type: ignore[arg-type]

    def run() -> None:
        try:
            applied = migrate(empty_db)
        except BaseException as exc:  # noqa: BLE001 - reported below
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(applied)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            waiting = scalar(
                empty_db,
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            if waiting == n:
                break
            assert time.monotonic() < deadline, f"only {waiting} migrators waiting"
            time.sleep(0.05)
    finally:
        holder.rollback()
        holder.close()
    for t in threads:
        t.join(60)

    assert errors == []
    assert sorted(results, key=len) == [[]] * (n - 1) + [ALL_MIGRATIONS]
    assert scalar(empty_db, "SELECT count(*) FROM queuert.schema_migration") == len(ALL_MIGRATIONS)


# ----------------------------------------------------------- schema choice


def test_custom_schema(empty_db: str) -> None:
    assert migrate(empty_db, schema="app_jobs") == ALL_MIGRATIONS
    with psycopg.connect(empty_db, autocommit=True) as c:
        assert c.execute("SELECT to_regnamespace('queuert') IS NULL").fetchone() == (True,)
        names = {
            r[0]
            for r in c.execute(
                "SELECT proname::text FROM pg_proc WHERE pronamespace = 'app_jobs'::regnamespace"
            )
        }
        assert {"start_chain", "claim", "complete"} <= names
        # no function body still refers to the default schema or the placeholder
        # (the setting queuert.notify is global by design, not a schema name)
        leftovers = c.execute(
            "SELECT proname::text FROM pg_proc WHERE pronamespace = 'app_jobs'::regnamespace"
            " AND (prosrc LIKE '%%{{%%'"
            "      OR replace(prosrc, 'queuert.notify', '') ~ '\\mqueuert\\.')"
        ).fetchall()
        assert leftovers == []

    # channel names use the schema: <schema>_job_ready
    with psycopg.connect(empty_db, autocommit=True) as listener, psycopg.connect(empty_db) as c:
        listener.execute("LISTEN app_jobs_job_ready")
        listener.execute("LISTEN queuert_job_ready")
        c.execute("SELECT * FROM app_jobs.start_chain(type_name => 'custom-schema-probe')")
        c.commit()
        got = [(n.channel, n.payload) for n in listener.notifies(timeout=5, stop_after=1)]
    assert got == [("app_jobs_job_ready", "custom-schema-probe")]


def test_custom_schema_via_cli(empty_db: str) -> None:
    result = CliRunner().invoke(cli, ["migrate", "--dsn", empty_db, "--schema", "app_jobs"])
    assert result.exit_code == 0, result.output
    assert scalar(empty_db, "SELECT count(*) FROM app_jobs.schema_migration") == len(ALL_MIGRATIONS)


@pytest.mark.parametrize(
    "bad", ["Queuert", "1jobs", "app-jobs", "app jobs", 'a"b', "", "x" * 41, "jobs;drop", "é"]
)
def test_invalid_schema_names_are_refused_before_connecting(bad: str) -> None:
    # the DSN points nowhere: validation must come first
    with pytest.raises(InvalidSchemaNameError, match=r"\[a-z_\]\[a-z0-9_\]\{0,39\}"):
        migrate("postgresql://nobody@127.0.0.1:1/none", schema=bad)


def test_longest_valid_schema_name_is_accepted(empty_db: str) -> None:
    name = "_" + "a1" * 19 + "z"
    assert len(name) == 40
    assert migrate(empty_db, schema=name) == ALL_MIGRATIONS


def test_invalid_schema_via_cli_is_a_usage_error(empty_db: str) -> None:
    result = CliRunner().invoke(cli, ["migrate", "--dsn", empty_db, "--schema", "Bad-Name"])
    assert result.exit_code == 2
    assert "invalid schema name" in result.output
    assert scalar(empty_db, "SELECT to_regnamespace('queuert') IS NULL") is True


def test_install_into_public_next_to_user_tables(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as c:
        c.execute("CREATE TABLE public.users (id int PRIMARY KEY, email text)")
        c.execute("INSERT INTO public.users VALUES (1, 'a@example.com')")
    assert migrate(empty_db, schema="public") == ALL_MIGRATIONS
    assert migrate(empty_db, schema="public") == []
    with psycopg.connect(empty_db, autocommit=True) as c:
        assert c.execute("SELECT * FROM public.users").fetchall() == [(1, "a@example.com")]
        assert c.execute("SELECT to_regclass('public.job') IS NOT NULL").fetchone() == (True,)


def test_collision_in_existing_schema_is_refused_before_anything_changes(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as c:
        c.execute("CREATE TABLE public.job (id serial PRIMARY KEY, title text)")
        c.execute("INSERT INTO public.job (title) VALUES ('mine')")
    snapshot = catalog_snapshot(empty_db)

    with pytest.raises(SchemaCollisionError) as err:
        migrate(empty_db, schema="public")
    assert "relation job" in err.value.names
    assert "public" in str(err.value) and "job" in str(err.value)

    assert catalog_snapshot(empty_db) == snapshot
    with psycopg.connect(empty_db, autocommit=True) as c:
        assert c.execute("SELECT title FROM public.job").fetchall() == [("mine",)]
        assert c.execute("SELECT to_regclass('public.schema_migration') IS NULL").fetchone() == (True,)


def test_colliding_function_and_type_names_are_reported(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as c:
        c.execute("CREATE SCHEMA app")
        c.execute("CREATE FUNCTION app.claim() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        c.execute("CREATE TYPE app.job_status AS ENUM ('x')")
    with pytest.raises(SchemaCollisionError) as err:
        migrate(empty_db, schema="app")
    assert "function claim" in err.value.names
    assert "type job_status" in err.value.names
    # the user's function was not replaced
    assert scalar(empty_db, "SELECT app.claim()") == 1


def test_collision_via_cli_exits_non_zero_with_the_names(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as c:
        c.execute("CREATE TABLE public.job_blocker (x int)")
    result = CliRunner().invoke(cli, ["migrate", "--dsn", empty_db, "--schema", "public"])
    assert result.exit_code == 1
    assert "job_blocker" in result.output


# ------------------------------------------------------------------ grants


@pytest.fixture
def roles(base_dsn: str) -> Iterator[Callable[[str], str]]:
    made: list[str] = []

    def make(suffix: str) -> str:
        name = f"queuert_test_{suffix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(base_dsn, autocommit=True) as c:
            c.execute(f'CREATE ROLE "{name}" NOLOGIN')
        made.append(name)
        return name

    yield make
    # the test databases are dropped first (new_database/dsn fixtures are
    # set up earlier, torn down later), so drop the grants from them here
    for name in made:
        with psycopg.connect(base_dsn, autocommit=True) as c:
            for (db,) in c.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                (f"queuert_t_{os.getpid()}_%",),
            ).fetchall():
                with psycopg.connect(make_conninfo(base_dsn, dbname=str(db)), autocommit=True) as d:
                    d.execute(f'DROP OWNED BY "{name}"')
            c.execute(f'DROP ROLE IF EXISTS "{name}"')


def test_grant_to_grants_usage_select_and_execute_only(
    empty_db: str, roles: Callable[[str], str]
) -> None:
    app = roles("app")
    other = roles("other")
    migrate(empty_db, grant_to=app)
    with psycopg.connect(empty_db, autocommit=True) as c:

        def q(query: str, *params: object) -> object:
            row = c.execute(query, params).fetchone()  # type: ignore[arg-type]
            assert row is not None
            return row[0]

        assert q("SELECT has_schema_privilege(%s, 'queuert', 'USAGE')", app) is True
        assert q("SELECT has_schema_privilege(%s, 'queuert', 'CREATE')", app) is False
        assert q("SELECT has_schema_privilege(%s, 'queuert', 'USAGE')", other) is False

        for table in ("queuert.job", "queuert.job_blocker", "queuert.job_type"):
            assert q("SELECT has_table_privilege(%s, %s, 'SELECT')", app, table) is True
            for priv in ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"):
                assert q("SELECT has_table_privilege(%s, %s, %s)", app, table, priv) is False, (
                    table,
                    priv,
                )
            assert q("SELECT has_table_privilege(%s, %s, 'SELECT')", other, table) is False
        for view in ("queuert.chain", "queuert.stats"):
            assert q("SELECT has_table_privilege(%s, %s, 'SELECT')", app, view) is True

        # no sequence privileges either
        assert q(
            "SELECT count(*) FROM pg_class c WHERE c.relnamespace = 'queuert'::regnamespace"
            " AND c.relkind = 'S' AND (has_sequence_privilege(%s, c.oid, 'USAGE')"
            "  OR has_sequence_privilege(%s, c.oid, 'UPDATE'))",
            app,
            app,
        ) == 0

        funcs = c.execute(
            "SELECT p.oid::regprocedure::text, has_function_privilege(%s, p.oid, 'EXECUTE'),"
            " has_function_privilege(%s, p.oid, 'EXECUTE')"
            " FROM pg_proc p WHERE p.pronamespace = 'queuert'::regnamespace",
            (app, other),
        ).fetchall()
    assert {"start_chain", "claim", "complete"} <= {f.split("(")[0].split(".")[-1] for f, _, _ in funcs}
    # the public API only: `_`-prefixed internals are never granted
    assert [f for f, granted, _ in funcs if not granted and not f.startswith("queuert._")] == []
    assert [f for f, granted, _ in funcs if granted and f.startswith("queuert._")] == []
    # EXECUTE is not left open to PUBLIC
    assert [f for f, _, public in funcs if public] == []


def test_grant_to_an_unknown_role_changes_nothing(empty_db: str) -> None:
    with pytest.raises(MigrationError, match="does not exist"):
        migrate(empty_db, grant_to="queuert_no_such_role_x")
    assert scalar(empty_db, "SELECT to_regnamespace('queuert') IS NULL") is True


# --------------------------------------------------------------------- CLI


def test_cli_migrate_with_dsn(empty_db: str) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["migrate", "--dsn", empty_db])
    assert result.exit_code == 0, result.output
    for name in ALL_MIGRATIONS:
        assert f"applied {name}" in result.output
    again = runner.invoke(cli, ["migrate", "--dsn", empty_db])
    assert again.exit_code == 0, again.output
    assert "no new migrations" in again.output


def test_cli_migrate_takes_the_dsn_from_database_url(empty_db: str) -> None:
    result = CliRunner().invoke(
        cli, ["migrate"], env={"DATABASE_URL": empty_db, "QUEUERT_DSN": "postgresql://nobody@127.0.0.1:1/x"}
    )
    assert result.exit_code == 0, result.output
    assert scalar(empty_db, "SELECT count(*) FROM queuert.schema_migration") == len(ALL_MIGRATIONS)


def test_cli_unreachable_database_is_a_clear_error() -> None:
    result = CliRunner().invoke(cli, ["migrate", "--dsn", "postgresql://nobody@127.0.0.1:1/x"])
    assert result.exit_code == 1
    assert "cannot connect" in result.output


def test_console_script_runs_as_a_process(empty_db: str) -> None:
    exe = Path(sys.executable).with_name("queuert")
    assert exe.exists(), "the queuert console script is installed next to python"
    help_out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert help_out.returncode == 0
    for command in ("migrate", "status", "chain", "worker"):
        assert command in help_out.stdout
    proc = subprocess.run(
        [str(exe), "migrate", "--dsn", empty_db], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert f"applied {ALL_MIGRATIONS[0]}" in proc.stdout


def test_cli_status_and_chain(dsn: str) -> None:
    runner = CliRunner()
    empty = runner.invoke(cli, ["status", "--dsn", dsn])
    assert empty.exit_code == 0, empty.output
    assert "no jobs" in empty.output

    with psycopg.connect(dsn) as c:
        chain_id = c.execute(
            "SELECT chain_id FROM queuert.start_chain(type_name => 'cli-probe', input => '{\"n\": 1}')"
        ).fetchone()[0]  # type: ignore[index]
        c.execute("SELECT * FROM queuert.start_chain(type_name => 'cli-probe')")
        c.execute("SELECT * FROM queuert.start_chain(type_name => 'other-type')")
        c.commit()

    status = runner.invoke(cli, ["status", "--dsn", dsn])
    assert status.exit_code == 0, status.output
    lines = status.output.splitlines()
    assert lines[0].split() == ["type", "status", "count", "oldest", "due"]
    rows = [line.split() for line in lines[2:]]
    assert [r[:3] for r in rows] == [["cli-probe", "pending", "2"], ["other-type", "pending", "1"]]
    # columns are aligned: each header starts where its cells start
    assert lines[1].split("  ")[0] == "-" * len("other-type")

    shown = runner.invoke(cli, ["chain", str(chain_id), "--dsn", dsn])
    assert shown.exit_code == 0, shown.output
    header, _, first = shown.output.splitlines()[:3]
    assert header.split() == ["index", "job", "id", "type", "status", "attempt", "errors", "blockers"]
    assert first.split() == ["0", str(chain_id), "cli-probe", "pending", "0", "-", "-"]

    missing = runner.invoke(cli, ["chain", str(uuid.uuid4()), "--dsn", dsn])
    assert missing.exit_code == 1
    assert "not found" in missing.output

    bad = runner.invoke(cli, ["chain", "not-a-uuid", "--dsn", dsn])
    assert bad.exit_code == 2


def test_cli_chain_shows_errors_and_blockers(dsn: str) -> None:
    with psycopg.connect(dsn) as c:
        blocker = c.execute(
            "SELECT chain_id FROM queuert.start_chain(type_name => 'child')"
        ).fetchone()[0]  # type: ignore[index]
        parent = c.execute(
            "SELECT chain_id FROM queuert.start_chain(type_name => 'parent', blockers => ARRAY[%s]::uuid[])",
            (blocker,),
        ).fetchone()[0]  # type: ignore[index]
        c.execute("SELECT * FROM queuert.claim('w1', ARRAY['child'])")
        c.execute("SELECT * FROM queuert.fail(%s, 'w1', 'boom: \n disk full')", (blocker,))
        c.commit()
    runner = CliRunner()
    child_out = runner.invoke(cli, ["chain", str(blocker), "--dsn", dsn])
    assert child_out.exit_code == 0, child_out.output
    assert "boom: disk full" in child_out.output
    assert " 1 " in child_out.output.splitlines()[2]  # attempt 1
    parent_out = runner.invoke(cli, ["chain", str(parent), "--dsn", dsn])
    assert parent_out.exit_code == 0, parent_out.output
    row = parent_out.output.splitlines()[2].split()
    assert row[3] == "blocked"
    assert row[-1] == str(blocker)


def test_cli_status_on_a_database_without_queuert(empty_db: str) -> None:
    result = CliRunner().invoke(cli, ["status", "--dsn", empty_db])
    assert result.exit_code == 1
    assert "queuert migrate" in result.output


def test_cli_worker_rejects_a_target_without_colon() -> None:
    result = CliRunner().invoke(cli, ["worker", "just_a_module"])
    assert result.exit_code == 2
    assert "MODULE:ATTR" in result.output


def test_cli_worker_processes_jobs_and_stops_on_sigterm(dsn: str, tmp_path: Path) -> None:
    (tmp_path / "cli_app.py").write_text(
        "def double(job):\n"
        "    return {'doubled': job.input['n'] * 2}\n"
        "\n"
        "handlers = {'cli-double': double}\n"
    )
    with psycopg.connect(dsn) as c:
        ids = [
            c.execute(
                "SELECT id FROM queuert.start_chain(type_name => 'cli-double', input => %s::jsonb)",
                (f'{{"n": {n}}}',),
            ).fetchone()[0]  # type: ignore[index]
            for n in range(5)
        ]
        other = c.execute("SELECT id FROM queuert.start_chain(type_name => 'not-mine')").fetchone()[0]  # type: ignore[index]
        c.commit()

    exe = Path(sys.executable).with_name("queuert")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen(
        [str(exe), "worker", "cli_app:handlers", "--dsn", dsn, "--types", "cli-double",
         "--concurrency", "2", "--mode", "atomic"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while scalar(
            dsn, "SELECT count(*) FROM queuert.job WHERE status = 'completed' AND id = ANY(%s)", (ids,)
        ) < len(ids):
            assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the worker did not complete the jobs"
            time.sleep(0.1)
        proc.terminate()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]

    with psycopg.connect(dsn, autocommit=True) as c:
        outputs = c.execute(
            "SELECT (input ->> 'n')::int, output, attempt FROM queuert.job WHERE id = ANY(%s) ORDER BY 1",
            (ids,),
        ).fetchall()
        assert outputs == [(n, {"doubled": 2 * n}, 1) for n in range(5)]
        # --types limited the worker to its own type
        assert c.execute("SELECT status::text FROM queuert.job WHERE id = %s", (other,)).fetchone() == ("pending",)


def test_cli_worker_reports_an_unloadable_target(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["worker", "queuert_no_such_module_xyz:app"])
    assert result.exit_code == 1
    assert "cannot load worker queuert_no_such_module_xyz:app" in result.output


def test_upgrade_to_0003_replaces_functions_whose_results_changed(empty_db: str, tmp_path: Path) -> None:
    """0003 changes the result columns of claim and complete_jobs, which
    CREATE OR REPLACE cannot do: a database whose functions still have the
    0002 shapes upgrades, and the functions answer with the new columns."""
    sql_dir, mig_dir = copy_sql_tree(tmp_path)
    sql_dir = keep_migrations(tmp_path, sql_dir, mig_dir, 2)
    assert migrate(empty_db, sql_dir=sql_dir, migrations_dir=mig_dir)[-1] == "0002_root_outside_chain_position"
    with psycopg.connect(empty_db, autocommit=True) as conn:
        # the 0002 result shapes (bodies do not matter: they are replaced)
        conn.execute("DROP FUNCTION queuert.claim(text, text[], integer, interval)")
        conn.execute(
            "CREATE FUNCTION queuert.claim(worker_id text, type_names text[] DEFAULT NULL,"
            " max_jobs integer DEFAULT 1, lease interval DEFAULT NULL)"
            " RETURNS TABLE (id uuid, blockers jsonb) LANGUAGE sql AS 'SELECT NULL::uuid, NULL::jsonb'"
        )
        conn.execute("DROP FUNCTION queuert.complete_jobs(text, uuid[], jsonb[], integer[])")
        conn.execute(
            "CREATE FUNCTION queuert.complete_jobs(worker_id text, job_ids uuid[],"
            " outputs jsonb[] DEFAULT NULL, attempts integer[] DEFAULT NULL)"
            " RETURNS TABLE (job_id uuid, outcome text) LANGUAGE sql AS 'SELECT NULL::uuid, NULL::text'"
        )
        conn.execute("SELECT * FROM queuert.start_chain('up')")
    assert migrate(empty_db)[0] == "0003_worker_result_shapes"
    with psycopg.connect(empty_db, autocommit=True) as conn:
        claimed = conn.execute("SELECT id, seq FROM queuert.claim('w', ARRAY['up'])").fetchone()
        assert claimed is not None and claimed[1] == 1
        done = conn.execute(
            "SELECT job_id, outcome, unblocked_types FROM queuert.complete_jobs('w', ARRAY[%s]::uuid[])",
            (claimed[0],),
        ).fetchall()
        assert done == [(claimed[0], "completed", [])]


def test_upgrade_to_0005_drops_the_retired_internal_functions(empty_db: str, tmp_path: Path) -> None:
    """sql/ renamed _notify and _announce and folded _chain_item_ok into
    _chain_item_problem; a database at 0004 still holds the old functions,
    and 0005 drops them while the engine keeps working."""
    sql_dir, mig_dir = copy_sql_tree(tmp_path)
    sql_dir = keep_migrations(tmp_path, sql_dir, mig_dir, 4)
    assert migrate(empty_db, sql_dir=sql_dir, migrations_dir=mig_dir)[-1] == "0004_failed_jobs_idx"
    retired = ["_notify(text, text[])", "_announce(text, text)", "_chain_item_ok(jsonb)"]
    with psycopg.connect(empty_db, autocommit=True) as conn:
        # what the 0003-era sql/ left behind (bodies do not matter)
        conn.execute("CREATE FUNCTION queuert._notify(kind text, payloads text[]) RETURNS integer"
                     " LANGUAGE sql AS 'SELECT 0'")
        conn.execute("CREATE FUNCTION queuert._announce(kind text, payload text) RETURNS boolean"
                     " LANGUAGE sql AS 'SELECT true'")
        conn.execute("CREATE FUNCTION queuert._chain_item_ok(item jsonb) RETURNS boolean"
                     " LANGUAGE sql AS 'SELECT true'")
    assert migrate(empty_db)[0] == "0005_retired_internals"
    with psycopg.connect(empty_db, autocommit=True) as conn:
        for signature in retired:
            found = conn.execute("SELECT to_regprocedure(%s)", (f"queuert.{signature}",)).fetchone()
            assert found == (None,), signature
        conn.execute("LISTEN queuert_job_ready")
        conn.execute("SELECT * FROM queuert.start_chain('after-0005')")
        conn.execute("SELECT * FROM queuert.start_chains('[{\"type_name\": \"after-0005\"}]')")
        assert [n.payload for n in conn.notifies(timeout=2, stop_after=2)] == ["after-0005"] * 2


def test_upgrade_to_0006_replaces_set_job_type_and_keeps_policies(empty_db: str, tmp_path: Path) -> None:
    """A database at 0005 has the six-argument set_job_type and job_type
    rows; 0006 drops that signature (no ambiguous overload is left), keeps
    the rows, and claim enforces the new limits."""
    sql_dir, mig_dir = copy_sql_tree(tmp_path)
    sql_dir = keep_migrations(tmp_path, sql_dir, mig_dir, 5)
    assert migrate(empty_db, sql_dir=sql_dir, migrations_dir=mig_dir)[-1] == "0005_retired_internals"
    with psycopg.connect(empty_db, autocommit=True) as conn:
        # the 0005-era set_job_type (its body does not matter) and a policy set with it
        conn.execute("DROP FUNCTION IF EXISTS queuert.set_job_type(text, integer, interval, float8, interval,"
                     " interval, integer, integer, interval)")
        conn.execute("CREATE OR REPLACE FUNCTION queuert.set_job_type(type_name text,"
                     " max_attempts integer DEFAULT NULL,"
                     " backoff_initial interval DEFAULT '10 seconds', backoff_multiplier float8 DEFAULT 2,"
                     " backoff_max interval DEFAULT '5 minutes', lease interval DEFAULT '60 seconds')"
                     " RETURNS queuert.job_type LANGUAGE sql AS 'SELECT NULL::queuert.job_type'")
        conn.execute("INSERT INTO queuert.job_type (type_name, max_attempts) VALUES ('kept', 3)")
    assert migrate(empty_db)[0] == "0006_limits_schedules_retention"  # and any later ones
    with psycopg.connect(empty_db, autocommit=True) as conn:
        signatures = conn.execute(
            "SELECT count(*) FROM pg_proc WHERE proname = 'set_job_type'"
            " AND pronamespace = 'queuert'::regnamespace"
        ).fetchone()
        assert signatures == (1,)
        assert conn.execute("SELECT max_attempts, max_running FROM queuert.job_type"
                            " WHERE type_name = 'kept'").fetchone() == (3, None)
        conn.execute("SELECT queuert.set_job_type('kept', max_attempts => 3, max_running => 1)")
        conn.execute("SELECT count(*) FROM queuert.start_chains('[{\"type_name\": \"kept\"},"
                     " {\"type_name\": \"kept\"}]')")
        assert len(conn.execute("SELECT id FROM queuert.claim('w', NULL, 5)").fetchall()) == 1
