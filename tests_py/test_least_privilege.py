"""Least privilege: an application role set up with ``migrate(grant_to=...)``
can use the public API and read the tables and views, and nothing more.

The role is a real LOGIN role (trust auth locally); the test connects as it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from queuert.migrate import migrate

Conn = psycopg.Connection[tuple[object, ...]]


@pytest.fixture
def app_setup(base_dsn: str, new_database: Callable[[], str]) -> Iterator[tuple[str, str, str]]:
    """(admin dsn, app dsn, role name): a fresh database migrated with grant_to."""
    role = f"queuert_app_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    db = new_database()
    with psycopg.connect(base_dsn, autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        migrate(db, schema="queuert", grant_to=role)
        params = conninfo_to_dict(db)
        params["user"] = role
        params.pop("password", None)
        yield db, make_conninfo(**params), role  # type: ignore[arg-type]
    finally:
        with psycopg.connect(db, autocommit=True) as c:
            c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with psycopg.connect(base_dsn, autocommit=True) as c:
            c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _one(c: Conn, query: str, *params: object) -> tuple[object, ...]:
    row = c.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row


def test_the_api_works_as_the_app_role(app_setup: tuple[str, str, str]) -> None:
    _admin, app_dsn, role = app_setup
    with psycopg.connect(app_dsn, autocommit=True) as c:
        assert _one(c, "SELECT current_user")[0] == role
        assert _one(c, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0] is False

        _one(c, "SELECT * FROM queuert.set_job_type('lp-step', max_attempts => 3)")
        blocker = _one(c, "SELECT id FROM queuert.start_chain('lp-child', '{\"n\": 1}')")[0]
        parent = _one(
            c,
            "SELECT id, status FROM queuert.start_chain('lp-parent', blockers => ARRAY[%s]::uuid[])",
            blocker,
        )
        assert parent[1] == "blocked"
        rows = c.execute(
            "SELECT ord, status FROM queuert.start_chains(%s::jsonb)",
            ('[{"type_name": "lp-batch"}, {"type_name": "lp-batch", "priority": 1}]',),
        ).fetchall()
        assert [r[0] for r in rows] == [1, 2]

        # claim the child chain's job and complete it: the parent unblocks
        claimed = c.execute(
            "SELECT id, attempt FROM queuert.claim('w1', ARRAY['lp-child'])"
        ).fetchall()
        assert [r[0] for r in claimed] == [blocker]
        done = _one(c, "SELECT chain_completed FROM queuert.complete(%s, 'w1', '{\"ok\": true}', 1)", blocker)
        assert done[0] is True
        assert _one(c, "SELECT status FROM queuert.job WHERE id = %s", parent[0])[0] == "pending"

        # the parent: claim (sees its blocker's output), continue, fail, reap path
        got = _one(c, "SELECT id, blockers FROM queuert.claim('w2', ARRAY['lp-parent'])")
        assert got[0] == parent[0]
        (seen,) = got[1]
        assert {k: seen[k] for k in ("chain_id", "type_name", "output")} == {
            "chain_id": str(blocker),
            "type_name": "lp-child",
            "output": {"ok": True},
        }
        assert seen["completed_at"] is not None  # and its trace_context (NULL: started untraced)
        assert seen["trace_context"] is None
        nxt = _one(c, "SELECT id, chain_index FROM queuert.continue_with(%s, 'w2', 'lp-step')", parent[0])
        assert nxt[1] == 1
        _one(c, "SELECT id FROM queuert.claim('w3', ARRAY['lp-step'])")
        assert _one(c, "SELECT status FROM queuert.fail(%s, 'w3', 'boom')", nxt[0])[0] == "pending"
        assert c.execute("SELECT * FROM queuert.renew_leases('w3', ARRAY[%s]::uuid[])", (nxt[0],)).fetchall() == [
            (nxt[0], "finished")
        ]
        assert _one(c, "SELECT count(*) FROM queuert.trigger_jobs(ARRAY[%s]::uuid[])", nxt[0])[0] == 1
        assert c.execute("SELECT * FROM queuert.reap()").fetchall() == []
        assert _one(c, "SELECT queuert.next_due_at() IS NOT NULL")[0] is True

        # inspection: the views, chain_jobs and direct reads of the tables
        chain = _one(c, "SELECT status, job_count FROM queuert.chain WHERE chain_id = %s", parent[0])
        assert chain == ("pending", 2)
        assert _one(c, "SELECT status FROM queuert.chain WHERE chain_id = %s", blocker)[0] == "completed"
        assert _one(c, "SELECT sum(count)::int FROM queuert.stats")[0] == 5
        jobs = c.execute("SELECT chain_index, type_name FROM queuert.chain_jobs(%s)", (parent[0],)).fetchall()
        assert jobs == [(0, "lp-parent"), (1, "lp-step")]
        assert _one(c, "SELECT count(*) FROM queuert.job_blocker")[0] == 1
        assert _one(c, "SELECT count(*) FROM queuert.job_type")[0] == 1

        # administrative operations of the API
        batch_ids = [r[0] for r in c.execute("SELECT id FROM queuert.job WHERE type_name = 'lp-batch'").fetchall()]
        assert len(c.execute("SELECT * FROM queuert.cancel_chains(%s::uuid[])", (batch_ids,)).fetchall()) == 2
        assert len(c.execute("SELECT * FROM queuert.retry_jobs(%s::uuid[])", (batch_ids,)).fetchall()) == 2
        assert len(c.execute("SELECT * FROM queuert.delete_chains(%s::uuid[])", (batch_ids,)).fetchall()) == 2
        assert _one(c, "SELECT count(*) FROM queuert.job WHERE type_name = 'lp-batch'")[0] == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE queuert.job SET status = 'completed'",
        "UPDATE queuert.job SET attempt = 0 WHERE false",
        "INSERT INTO queuert.job (id, type_name, chain_id, chain_type_name, chain_index, status, scheduled_at)"
        " VALUES (gen_random_uuid(), 'x', gen_random_uuid(), 'x', 1, 'pending', now())",
        "DELETE FROM queuert.job",
        "TRUNCATE queuert.job CASCADE",
        "DELETE FROM queuert.job_blocker",
        "INSERT INTO queuert.job_blocker VALUES (gen_random_uuid(), 1, gen_random_uuid())",
        "UPDATE queuert.job_type SET lease = '1 second'",
        "DELETE FROM queuert.dedup_guard",
        "DELETE FROM queuert.schema_migration",
        "SELECT queuert._resolve_dependents(ARRAY(SELECT chain_id FROM queuert.job))",
        "SELECT queuert._chains_completed(ARRAY(SELECT chain_id FROM queuert.job),"
        " ARRAY(SELECT chain_id FROM queuert.job))",
        "SELECT queuert._guard_dedup_keys(ARRAY['x'], ARRAY['k'])",
        "SELECT queuert._lock_chain_set(ARRAY(SELECT chain_id FROM queuert.job), true, 'x')",
        "SELECT queuert._lock_jobs_with_status(ARRAY(SELECT id FROM queuert.job), '{pending}', 'x')",
        "CREATE TABLE queuert.intruder (x int)",
        "CREATE FUNCTION queuert.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT now()'",
    ],
)
def test_direct_writes_and_internals_are_refused(app_setup: tuple[str, str, str], statement: str) -> None:
    admin_dsn, app_dsn, _role = app_setup
    with psycopg.connect(app_dsn, autocommit=True) as c:
        root = _one(c, "SELECT id FROM queuert.start_chain('lp-a')")[0]
        _one(c, "SELECT id FROM queuert.start_chain('lp-b', blockers => ARRAY[%s]::uuid[])", root)
    with psycopg.connect(admin_dsn, autocommit=True) as a:
        before = a.execute(
            "SELECT (SELECT jsonb_agg(j ORDER BY j.id) FROM queuert.job j),"
            " (SELECT jsonb_agg(b ORDER BY b.job_id) FROM queuert.job_blocker b)"
        ).fetchone()
    with psycopg.connect(app_dsn, autocommit=True) as c:
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute(statement)
    with psycopg.connect(admin_dsn, autocommit=True) as a:
        after = a.execute(
            "SELECT (SELECT jsonb_agg(j ORDER BY j.id) FROM queuert.job j),"
            " (SELECT jsonb_agg(b ORDER BY b.job_id) FROM queuert.job_blocker b)"
        ).fetchone()
    assert before == after




def test_only_the_public_api_is_executable_and_it_runs_as_definer(app_setup: tuple[str, str, str]) -> None:
    admin_dsn, _app, role = app_setup
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        funcs = c.execute(
            "SELECT p.proname::text, p.prosecdef, coalesce(p.proconfig, '{}'),"
            " has_function_privilege(%s, p.oid, 'EXECUTE'),"
            " has_function_privilege('public', p.oid, 'EXECUTE')"
            " FROM pg_proc p WHERE p.pronamespace = 'queuert'::regnamespace ORDER BY 1",
            (role,),
        ).fetchall()
    public = [f for f in funcs if not str(f[0]).startswith("_")]
    internal = [f for f in funcs if str(f[0]).startswith("_")]
    assert {"start_chain", "start_chains", "claim", "complete", "continue_with", "fail", "reap",
            "renew_leases", "cancel_chains", "delete_chains", "retry_jobs", "trigger_jobs",
            "chain_jobs", "next_due_at", "set_job_type", "complete_jobs", "release_jobs",
            "release_unknown_jobs", "reap_jobs"} <= {f[0] for f in public}
    assert internal, "expected `_`-prefixed internals"
    for name, secdef, config, app_can, public_can in public:
        assert secdef is True, f"{name} must be SECURITY DEFINER"
        assert any(str(s).startswith("search_path=") for s in config), f"{name} needs a fixed search_path"
        assert app_can is True, name
        assert public_can is False, name
    for name, secdef, _config, app_can, public_can in internal:
        assert secdef is False, f"{name} must not be SECURITY DEFINER"
        assert app_can is False, f"{name} must not be executable by the app role"
        assert public_can is False, name


def test_a_re_migrate_takes_back_an_earlier_grant_of_internals(app_setup: tuple[str, str, str]) -> None:
    admin_dsn, app_dsn, role = app_setup
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        c.execute(
            sql.SQL("GRANT EXECUTE ON FUNCTION queuert._resolve_dependents(uuid[], text[]) TO {}").format(
                sql.Identifier(role)
            )
        )
    migrate(admin_dsn, schema="queuert", grant_to=role)
    with psycopg.connect(app_dsn, autocommit=True) as c:
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute("SELECT queuert._resolve_dependents('{}')")
