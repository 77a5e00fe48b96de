"""Query plans: the hot paths stay on their partial indexes when the table is
full of finished and blocked rows.

The statements below are copied from the engine (sql/040_claim.sql,
sql/016_blockers.sql, sql/070_leases.sql). Each is checked twice: with literal
arguments (a custom plan) and as a prepared statement with a forced generic
plan, which is what PL/pgSQL ends up caching for a function called often.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql
import pytest

Conn = psycopg.Connection[Any]

# sql/040_claim.sql, the candidate queries of claim(): one without a type
# filter, one with (claim runs them with plan_cache_mode = force_generic_plan).
CLAIM_ANY = """
SELECT j.id
FROM queuert.job AS j
WHERE j.status = 'pending' AND j.scheduled_at <= now()
ORDER BY j.priority DESC, j.scheduled_at, j.seq
LIMIT coalesce({max_jobs}, 1)
FOR NO KEY UPDATE SKIP LOCKED
"""
CLAIM_TYPED = """
SELECT j.id
FROM queuert.job AS j
WHERE j.status = 'pending' AND j.scheduled_at <= now()
    AND j.type_name = ANY({types})
ORDER BY j.priority DESC, j.scheduled_at, j.seq
LIMIT coalesce({max_jobs}, 1)
FOR NO KEY UPDATE SKIP LOCKED
"""


def claim_candidates(types: list[str] | None) -> str:
    return CLAIM_ANY if types is None else CLAIM_TYPED

# sql/040_claim.sql, next_due_at(): a loose index scan of job_claim_idx.
NEXT_DUE = """
WITH RECURSIVE priorities (priority) AS (
    (
        SELECT j.priority FROM queuert.job AS j
        WHERE j.status = 'pending'
        ORDER BY j.priority DESC
        LIMIT 1
    )
    UNION ALL
    SELECT (
        SELECT j.priority FROM queuert.job AS j
        WHERE j.status = 'pending' AND j.priority < p.priority
        ORDER BY j.priority DESC
        LIMIT 1
    )
    FROM priorities AS p
    WHERE p.priority IS NOT NULL
)
SELECT min((
    SELECT j.scheduled_at FROM queuert.job AS j
    WHERE j.status = 'pending' AND j.priority = p.priority
        AND ({types} IS NULL OR j.type_name = ANY({types}))
    ORDER BY j.priority DESC, j.scheduled_at
    LIMIT 1
))
FROM priorities AS p
WHERE p.priority IS NOT NULL
"""

# sql/016_blockers.sql, _resolve_dependents(): the edges to completed chains
# (the function reads them INTO arrays; the copy checked against the source
# starts at FROM).
DEPENDENTS_FROM = """
FROM queuert.job_blocker AS b
WHERE b.blocker_chain_id = ANY({chain_ids});
"""
DEPENDENTS = "SELECT b.job_id, b.blocker_chain_id " + DEPENDENTS_FROM.rstrip().rstrip(";")

# sql/070_leases.sql, reap_jobs() (reap() wraps it): expired leases.
EXPIRED = """
SELECT j.id, j.leased_by
FROM queuert.job AS j
WHERE j.status = 'running' AND j.leased_until < clock_timestamp()
ORDER BY j.leased_until
LIMIT coalesce({max_jobs}, 100)
FOR NO KEY UPDATE SKIP LOCKED
"""

N_COMPLETED = 50_000
N_BLOCKED = 50_000
N_BLOCKER_CHAINS = 5_000


@pytest.fixture(scope="module")
def big(base_dsn: str, template_db: str) -> Iterator[str]:
    """One database for the module: ~50k completed, ~50k blocked, a few pending
    and running jobs, analyzed. Read-only for the tests."""
    from conftest import create_database, drop_database  # the shared fixture helpers

    name = f"{template_db}_plans"
    dsn = create_database(base_dsn, name, template=template_db)
    try:
        with psycopg.connect(dsn) as conn:
            # The edges below are consistent by construction: skip the per-row
            # foreign-key triggers, which would triple the set-up time.
            conn.execute("SET session_replication_role = replica")
            # Bulk rows straight into the table (a test fixture, not a user):
            # completed single-job chains ...
            conn.execute(
                """
                INSERT INTO queuert.job (id, type_name, chain_id, chain_type_name,
                    chain_index, status, scheduled_at, completed_at, output,
                    chain_completed_at, attempt)
                SELECT u, 'done', u, 'done', 0, 'completed', now() - interval '1 day',
                    now(), '{}'::jsonb, now(), 1
                FROM (SELECT gen_random_uuid() AS u FROM generate_series(1, %s)) AS g
                """,
                (N_COMPLETED,),
            )
            # ... blocker chains, still running ...
            conn.execute(
                """
                INSERT INTO queuert.job (id, type_name, chain_id, chain_type_name,
                    chain_index, status, scheduled_at, attempt, leased_by, leased_until)
                SELECT u, 'parent', u, 'parent', 0, 'running', now(), 1, 'w',
                    clock_timestamp() + interval '1 hour'
                FROM (SELECT gen_random_uuid() AS u FROM generate_series(1, %s)) AS g
                """,
                (N_BLOCKER_CHAINS,),
            )
            # ... and blocked jobs waiting on them (10 per blocker chain).
            conn.execute(
                """
                WITH p AS (
                    SELECT id, row_number() OVER (ORDER BY id) AS rn
                    FROM queuert.job WHERE type_name = 'parent'
                ),
                b AS (
                    INSERT INTO queuert.job (id, type_name, chain_id, chain_type_name,
                        chain_index, status, scheduled_at, open_blockers)
                    SELECT u, 'child', u, 'child', 0, 'blocked', now(), 1
                    FROM (SELECT gen_random_uuid() AS u, g AS n
                          FROM generate_series(1, %s) AS g) AS x
                    RETURNING id, seq
                )
                INSERT INTO queuert.job_blocker (job_id, position, blocker_chain_id)
                SELECT b.id, 1, p.id
                FROM b JOIN p ON p.rn = (b.seq %% %s) + 1
                """,
                (N_BLOCKED, N_BLOCKER_CHAINS),
            )
            items = [{"type_name": f"ready-{i % 3}", "priority": i % 2} for i in range(20)]
            items += [{"type_name": "later", "schedule_after_ms": 3_600_000} for _ in range(5)]
            conn.execute("SELECT count(*) FROM queuert.start_chains(%s)", (json.dumps(items),))
            conn.commit()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE queuert.job")
            conn.execute("VACUUM ANALYZE queuert.job_blocker")
        yield dsn
    finally:
        drop_database(base_dsn, name)


@pytest.fixture
def db(big: str) -> Iterator[Conn]:
    with psycopg.connect(big) as conn:
        yield conn
        conn.rollback()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def explain(conn: Conn, query: str, args: dict[str, tuple[str, Any]], generic: bool) -> list[dict[str, Any]]:
    """Plan nodes of ``query``; args maps placeholder -> (sql type, value)."""
    if not generic:
        literal = {k: sql.Literal(v).as_string(conn) + f"::{t}" for k, (t, v) in args.items()}
        text = query.format(**literal)
        row = conn.execute(f"EXPLAIN (FORMAT JSON) {text}").fetchone()
    else:
        names = list(args)
        text = query.format(**{k: f"${i + 1}" for i, k in enumerate(names)})
        types = ", ".join(args[k][0] for k in names)
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE q ({types}) AS {text}")
        try:
            params = ", ".join(
                sql.Literal(args[k][1]).as_string(conn) + f"::{args[k][0]}" for k in names
            )
            row = conn.execute(f"EXPLAIN (FORMAT JSON) EXECUTE q ({params})").fetchone()
        finally:
            conn.execute("DEALLOCATE q")
    assert row is not None
    return list(_nodes(row[0][0]["Plan"]))


def scans(nodes: list[dict[str, Any]], relation: str) -> list[tuple[str, str | None]]:
    return [
        (n["Node Type"], n.get("Index Name"))
        for n in nodes
        if n.get("Relation Name") == relation
    ]


def test_fixture_has_the_shape_we_claim(db: Conn) -> None:
    counts = dict(db.execute("SELECT status::text, count(*) FROM queuert.job GROUP BY 1").fetchall())
    assert counts == {
        "completed": N_COMPLETED,
        "blocked": N_BLOCKED,
        "running": N_BLOCKER_CHAINS,
        "pending": 25,
    }


PENDING_ONLY_INDEXES = {"job_claim_idx"}


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
@pytest.mark.parametrize("types", [None, ["ready-1"]], ids=["any-type", "one-type"])
def test_claim_with_few_pending_reads_only_a_pending_index(
    db: Conn, generic: bool, types: list[str] | None
) -> None:
    """With only a handful of pending rows, the planner may pick either partial
    index over pending rows (claim order, or due time then a sort of those few
    rows); it must never touch the 105k completed, blocked and running rows."""
    nodes = explain(
        db, claim_candidates(types),
        {"types": ("text[]", types), "max_jobs": ("integer", 10)}, generic,
    )
    found = scans(nodes, "job")
    assert len(found) == 1 and found[0][0] == "Index Scan", nodes
    assert found[0][1] in PENDING_ONLY_INDEXES, nodes
    assert all(n["Plan Rows"] < 1000 for n in nodes), nodes


def test_claim_with_a_backlog_uses_job_claim_idx_in_order(db: Conn, big: str) -> None:
    """A real queue (20k due pending jobs on top of the fixture): the claim
    walks job_claim_idx in claim order and stops after max_jobs rows: no sort,
    no scan of every due row. The backlog is removed afterwards."""
    db.execute(
        """
        INSERT INTO queuert.job (id, type_name, chain_id, chain_type_name, chain_index,
            status, priority, scheduled_at)
        SELECT u, 'backlog-' || n % 4, u, 'backlog-' || n % 4, 0, 'pending', n % 3,
            now() - interval '1 minute'
        FROM (SELECT gen_random_uuid() AS u, n FROM generate_series(1, 20000) AS n) AS g
        """
    )
    db.commit()
    with psycopg.connect(big, autocommit=True) as admin:
        admin.execute("ANALYZE queuert.job")
    try:
        for generic in (False, True):
            for types in (None, ["backlog-1"]):
                nodes = explain(
                    db, claim_candidates(types),
                    {"types": ("text[]", types), "max_jobs": ("integer", 10)}, generic,
                )
                assert scans(nodes, "job") == [("Index Scan", "job_claim_idx")], (
                    generic, types, nodes,
                )
                assert not any(n["Node Type"] in ("Sort", "Seq Scan") for n in nodes), nodes
                db.rollback()
    finally:
        db.rollback()
        db.execute("DELETE FROM queuert.job WHERE type_name LIKE 'backlog-%'")
        db.commit()
        with psycopg.connect(big, autocommit=True) as admin:
            admin.execute("ANALYZE queuert.job")


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
def test_next_due_at_walks_job_claim_idx(db: Conn, generic: bool) -> None:
    nodes = explain(db, NEXT_DUE, {"types": ("text[]", None)}, generic)
    found = scans(nodes, "job")
    assert found and all(kind in ("Index Scan", "Index Only Scan") for kind, _ in found), nodes
    assert {index for _, index in found} == {"job_claim_idx"}, nodes


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
def test_blocker_resolution_uses_job_blocker_chain_idx(db: Conn, generic: bool) -> None:
    chain = db.execute("SELECT id FROM queuert.job WHERE type_name = 'parent' LIMIT 1").fetchone()
    assert chain is not None
    nodes = explain(db, DEPENDENTS, {"chain_ids": ("uuid[]", [chain[0]])}, generic)
    found = scans(nodes, "job_blocker")
    assert len(found) == 1, nodes
    node_type, index = found[0]
    if node_type == "Bitmap Heap Scan":
        index = next(n.get("Index Name") for n in nodes if n["Node Type"] == "Bitmap Index Scan")
    else:
        assert node_type in ("Index Scan", "Index Only Scan"), nodes
    assert index == "job_blocker_chain_idx", nodes


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
def test_reap_uses_job_lease_idx(db: Conn, generic: bool) -> None:
    nodes = explain(db, EXPIRED, {"max_jobs": ("integer", 100)}, generic)
    assert scans(nodes, "job") == [("Index Scan", "job_lease_idx")], nodes


def test_plan_queries_match_the_engine_source() -> None:
    """The copies above must not drift from the engine's SQL."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "sql"

    def norm(text: str) -> str:
        return " ".join(text.split())

    claim_src = norm((root / "040_claim.sql").read_text())
    blockers_src = norm((root / "016_blockers.sql").read_text())
    leases_src = norm((root / "070_leases.sql").read_text())
    schema = "{{ schema }}"
    expected = [
        (claim_src, CLAIM_ANY.format(max_jobs="claim.max_jobs")),
        (claim_src, CLAIM_TYPED.format(types="claim.type_names", max_jobs="claim.max_jobs")),
        (claim_src, NEXT_DUE.format(types="next_due_at.type_names")),
        (blockers_src, DEPENDENTS_FROM.format(chain_ids="_resolve_dependents.chain_ids")),
        (leases_src, EXPIRED.format(max_jobs="reap_jobs.max_jobs")),
    ]
    for src, query in expected:
        assert norm(query.replace("queuert.", f"{schema}.")) in src, query


# sql/100_inspection.sql and sql/012_chains.sql (_chain_tail): a chain's last
# job. Roots are not in job_chain_position_idx (migration 0002), so the tail
# is the root (by id) or the highest later position (that index, backwards).
CHAIN_TAIL = "SELECT * FROM queuert.chain WHERE chain_id = {chain_id}"
CHAIN_TAIL_FN = (
    "SELECT t.id FROM unnest({chain_ids}) AS c (id)"
    " CROSS JOIN LATERAL queuert._chain_tail(c.id) AS t"
)
# sql/100_inspection.sql, chain_jobs(): every job of one chain.
CHAIN_MEMBERS = """
SELECT j.*
FROM queuert.job AS j
WHERE (j.chain_index > 0 AND j.chain_id = {chain_id})
    OR (j.chain_index = 0 AND j.id = {chain_id})
ORDER BY j.chain_index
"""


def backwards_on_chain_position(nodes: list[dict[str, Any]]) -> bool:
    return any(
        n.get("Index Name") == "job_chain_position_idx" and n.get("Scan Direction") == "Backward"
        for n in nodes
    )


@pytest.fixture
def long_chain(db: Conn) -> str:
    """A root plus 2,000 later jobs (rolled back after the test)."""
    row = db.execute("SELECT id FROM queuert.job WHERE type_name = 'done' LIMIT 1").fetchone()
    assert row is not None
    db.execute(
        """
        INSERT INTO queuert.job (id, type_name, chain_id, chain_type_name, chain_index,
            status, scheduled_at, completed_at, attempt)
        SELECT gen_random_uuid(), 'step', %(c)s, 'done', g, 'completed', now(), now(), 1
        FROM generate_series(1, 2000) AS g
        """,
        {"c": row[0]},
    )
    db.execute("ANALYZE queuert.job")
    return str(row[0])


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
def test_chain_tail_reads_one_later_position_backwards(db: Conn, long_chain: str, generic: bool) -> None:
    nodes = explain(db, CHAIN_TAIL, {"chain_id": ("uuid", long_chain)}, generic)
    found = scans(nodes, "job")
    assert backwards_on_chain_position(nodes), nodes
    assert all(kind != "Seq Scan" for kind, _ in found), nodes
    assert not any(n["Node Type"] == "Sort" and n.get("Plan Rows", 0) > 1 for n in nodes), nodes
    tail = db.execute("SELECT job_count, current_type_name FROM queuert.chain WHERE chain_id = %s", (long_chain,))
    assert tail.fetchone() == (2001, "step")


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
def test_chain_tail_function_is_inlined(db: Conn, long_chain: str, generic: bool) -> None:
    nodes = explain(db, CHAIN_TAIL_FN, {"chain_ids": ("uuid[]", [long_chain])}, generic)
    assert not any(n["Node Type"] == "Function Scan" and n.get("Function Name") == "_chain_tail" for n in nodes), nodes
    assert backwards_on_chain_position(nodes), nodes


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
def test_chain_members_use_the_primary_key_and_chain_position(db: Conn, long_chain: str, generic: bool) -> None:
    nodes = explain(db, CHAIN_MEMBERS, {"chain_id": ("uuid", long_chain)}, generic)
    assert all(kind != "Seq Scan" for kind, _ in scans(nodes, "job")), nodes
    count = db.execute("SELECT count(*) FROM queuert.chain_jobs(%s)", (long_chain,)).fetchone()
    assert count == (2001,)


def test_chain_queries_match_the_engine_source() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "sql"

    def norm(text: str) -> str:
        return " ".join(text.split())

    members = norm(CHAIN_MEMBERS.format(chain_id="chain_jobs.chain_id").replace("queuert.", "{{ schema }}."))
    assert members in norm((root / "100_inspection.sql").read_text())
