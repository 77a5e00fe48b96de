"""Query plans without trustworthy statistics (issue 19).

A real first day: queuert is installed, a burst of jobs arrives, workers
start, and autovacuum has not analyzed ``queuert.job`` yet. Or the table was
analyzed while it held a handful of rows, or while nothing was pending, and
then the burst came. Every statement the engine runs must stay on its index
(claim walks ``job_claim_idx`` in order and stops) whatever the planner
believes about the table, including a session that planned (and cached, as
PL/pgSQL does) its statements before the burst.

The plans are the engine's own: ``auto_explain`` with
``log_nested_statements`` and ``log_analyze`` sends the plan of every
statement a function executes to the session as a NOTICE (JSON), so these
tests read what PL/pgSQL actually cached and ran, with real row counts, not
a copy of the SQL. A statement passes when no scan of ``job`` or
``job_blocker`` reads more than ``MAX_READ`` rows (the backlog is 20,000
pending jobs plus 5,000 blocked ones), there is no sequential scan of them,
and the ordered candidate scans (claim, reap) contain no Sort.

Scenarios (each in its own database, autovacuum off on the engine's tables so
that statistics cannot arrive in the middle of a test):

* ``cold``: the backlog created on a fresh install, never analyzed.
* ``empty-session``: one session runs every call on the empty fresh table
  first (its plans are cached), then the backlog arrives; same session.
* ``tiny-session``: as above, but the table was analyzed and vacuumed while it
  held a few rows (what autovacuum does after the first 50 changes).
* ``stale``: 50,000 completed rows and a few pending, analyzed (pending looks
  rare); then the burst.
* ``truncated``: analyzed with a backlog, TRUNCATE, then the backlog again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

Conn = psycopg.Connection[Any]

pytestmark = pytest.mark.server_library(
    "auto_explain", reason="plans inside the engine's functions are read through auto_explain"
)

# A claim takes at most 100 jobs here, a fan-in completion resolves 500
# dependents: anything reading more rows than this walked the backlog.
MAX_READ = 2_000
TABLES = ("job", "job_blocker")


# -- plans through auto_explain ----------------------------------------------


def enable_auto_explain(conn: Conn) -> None:
    """Every statement this session executes, nested ones included, has its
    plan (with actual rows) sent back as a NOTICE."""
    conn.execute("LOAD 'auto_explain'")
    for name, value in (
        ("log_min_duration", "0"),
        ("log_nested_statements", "on"),
        ("log_analyze", "on"),
        ("log_timing", "off"),
        ("log_format", "json"),
        ("log_level", "notice"),
    ):
        conn.execute(f"SET auto_explain.{name} = {value}")


def run_with_plans(conn: Conn, query: str, params: Any = None) -> list[dict[str, Any]]:
    """Runs ``query`` in a transaction that is rolled back; returns the plans
    of every statement executed meanwhile (the top-level one's plan arrives
    when its portal closes, hence the handler spans the whole transaction)."""
    plans: list[dict[str, Any]] = []

    def on_notice(diag: psycopg.errors.Diagnostic) -> None:
        message = diag.message_primary or ""
        if "plan:" in message:
            plans.append(json.loads(message.split("plan:", 1)[1]))

    conn.add_notice_handler(on_notice)
    try:
        conn.execute("BEGIN")
        try:
            conn.execute(query, params).fetchall()
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.remove_notice_handler(on_notice)
    assert plans, f"auto_explain sent no plan for {query}"
    return plans


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def index_table(conn: Conn) -> dict[str, str]:
    rows = conn.execute(
        "SELECT indexrelid::regclass::text, indrelid::regclass::text FROM pg_index"
        " WHERE indrelid IN ('queuert.job'::regclass, 'queuert.job_blocker'::regclass)"
    ).fetchall()
    return {str(i).split(".")[-1]: str(t).split(".")[-1] for i, t in rows}


def rows_read(node: dict[str, Any]) -> int:
    per_loop = (
        node.get("Actual Rows", 0)
        + node.get("Rows Removed by Filter", 0)
        + node.get("Rows Removed by Index Recheck", 0)
    )
    return int(per_loop * max(node.get("Actual Loops", 1), 1))


def problems(plans: list[dict[str, Any]], indexes: dict[str, str]) -> list[str]:
    """What is wrong with these plans: sequential scans of the queue tables,
    scans that read more than MAX_READ of their rows, ordered candidate
    scans that sort."""
    found = []
    for plan in plans:
        text = " ".join(plan["Query Text"].split())
        ordered_scan = "SKIP LOCKED" in text and "ORDER BY" in text
        for node in nodes(plan["Plan"]):
            table = node.get("Relation Name") or indexes.get(node.get("Index Name", ""))
            kind = node["Node Type"]
            where = f"{kind} {node.get('Index Name') or table or ''}".strip()
            if table in TABLES and kind == "Seq Scan":
                found.append(f"{where} in: {text[:140]}")
            elif table in TABLES and rows_read(node) > MAX_READ:
                found.append(f"{where} read {rows_read(node)} rows in: {text[:140]}")
            elif ordered_scan and kind in ("Sort", "Incremental Sort"):
                found.append(f"{where} in the ordered candidate scan: {text[:140]}")
    return found


# -- the state a scenario builds ---------------------------------------------


@dataclass
class State:
    """Ids the calls work on (none of them is changed: every call is rolled back)."""

    held: list[uuid.UUID] = field(default_factory=list)  # running under worker 'w'
    held_attempts: list[int] = field(default_factory=list)
    held_parents: list[uuid.UUID] = field(default_factory=list)  # running, 100 dependents each
    pending: list[uuid.UUID] = field(default_factory=list)
    roots: list[uuid.UUID] = field(default_factory=list)  # pending roots to block on
    failed: list[uuid.UUID] = field(default_factory=list)
    solo_child: uuid.UUID | None = None  # blocked on a chain nobody else waits on


def start_many(conn: Conn, items: list[dict[str, Any]]) -> list[uuid.UUID]:
    rows = conn.execute(
        "SELECT id FROM queuert.start_chains(%s::jsonb)", (json.dumps(items),)
    ).fetchall()
    return [r[0] for r in rows]


@dataclass(frozen=True)
class Sizes:
    pending: int
    parents: int
    children_per_parent: int
    dedup: int
    held: int


BACKLOG = Sizes(pending=20_000, parents=50, children_per_parent=100, dedup=2_000, held=100)
# The first jobs of a new install.
A_FEW = Sizes(pending=8, parents=1, children_per_parent=1, dedup=2, held=3)


def load(conn: Conn, size: Sizes) -> State:
    """Jobs created and taken through the engine, as an application and its
    workers would: plain jobs of four types at two priorities (each type at
    both), parent chains with dependents, roots with dedup keys, a few
    failed jobs; then worker 'w' holds some jobs and the parents, and worker
    'gone' holds a few whose leases have expired."""
    state = State()
    for start in range(0, size.pending, 5_000):
        start_many(conn, [
            {"type_name": f"t{i % 4}", "priority": (i // 4) % 2, "input": {"n": i}}
            for i in range(start, min(start + 5_000, size.pending))
        ])
    start_many(conn, [{"type_name": "d", "dedup_key": f"k{i}"} for i in range(size.dedup)])
    parents = start_many(conn, [{"type_name": "parent"} for _ in range(size.parents)])
    start_many(conn, [
        {"type_name": "child", "blockers": [str(parents[i % size.parents])]}
        for i in range(size.parents * size.children_per_parent)
    ])
    lonely = start_many(conn, [{"type_name": "lonely"}])
    state.solo_child = start_many(conn, [{"type_name": "child", "blockers": [str(lonely[0])]}])[0]
    conn.execute("SELECT queuert.set_job_type('flaky', max_attempts => 1)")
    start_many(conn, [{"type_name": "flaky"} for _ in range(3)])
    for (job_id,) in conn.execute("SELECT id FROM queuert.claim('w0', '{flaky}', 3)").fetchall():
        conn.execute("SELECT queuert.fail(%s, 'w0', 'boom')", (job_id,))
    state.failed = [r[0] for r in conn.execute(
        "SELECT id FROM queuert.job WHERE type_name = 'flaky' AND status = 'failed'"
    ).fetchall()]
    held = conn.execute(
        "SELECT id, attempt FROM queuert.claim('w', '{t0,t1,t2,t3}', %s)", (size.held,)
    ).fetchall()
    state.held = [r[0] for r in held]
    state.held_attempts = [r[1] for r in held]
    state.held_parents = [r[0] for r in conn.execute(
        "SELECT id FROM queuert.claim('w', '{parent}', %s)", (size.parents,)
    ).fetchall()]
    conn.execute("SELECT count(*) FROM queuert.claim('gone', '{t3}', 2, interval '1 millisecond')")
    newest = conn.execute(
        "SELECT id FROM queuert.job WHERE status = 'pending' AND type_name LIKE 't_'"
        " ORDER BY seq DESC LIMIT 4"
    ).fetchall()
    state.pending = [r[0] for r in newest[:2]]
    state.roots = [r[0] for r in newest[2:]]
    return state


# -- what is checked ---------------------------------------------------------

Call = tuple[str, Callable[[State], tuple[str, Any]]]

CALLS: list[Call] = [
    ("claim one", lambda s: ("SELECT id FROM queuert.claim('c', NULL, 1)", None)),
    ("claim 100", lambda s: ("SELECT id FROM queuert.claim('c', NULL, 100)", None)),
    ("claim one of a type", lambda s: ("SELECT id FROM queuert.claim('c', '{t1}', 1)", None)),
    ("claim 100 of two types", lambda s: ("SELECT id FROM queuert.claim('c', '{t1,t2}', 100)", None)),
    # limits (migration 0006): claim's limited path, then back to none
    ("set_job_type with limits", lambda s: (
        "SELECT * FROM queuert.set_job_type('t2', max_running => 500, rate_limit => 1000,"
        " rate_interval => interval '1 hour')", None)),
    ("claim 100 of a limited type", lambda s: ("SELECT id FROM queuert.claim('c', '{t2}', 100)", None)),
    ("claim 100 beside a limited type", lambda s: ("SELECT id FROM queuert.claim('c', NULL, 100)", None)),
    ("set_job_type without limits", lambda s: ("SELECT * FROM queuert.set_job_type('t2')", None)),
    ("next_due_at", lambda s: ("SELECT queuert.next_due_at(NULL)", None)),
    ("next_due_at of a type", lambda s: ("SELECT queuert.next_due_at('{t3}')", None)),
    ("reap", lambda s: ("SELECT * FROM queuert.reap(100)", None)),
    ("renew_leases", lambda s: ("SELECT * FROM queuert.renew_leases('w', %s)", (s.held,))),
    ("complete_jobs", lambda s: (
        "SELECT * FROM queuert.complete_jobs('w', %s, NULL, %s)", (s.held, s.held_attempts))),
    ("complete_jobs of fan-in parents", lambda s: (
        "SELECT * FROM queuert.complete_jobs('w', %s)", (s.held_parents[:5],))),
    ("release_jobs", lambda s: (
        "SELECT * FROM queuert.release_jobs('w', %s, %s)", (s.held, s.held_attempts))),
    ("reap_jobs", lambda s: ("SELECT * FROM queuert.reap_jobs(100)", None)),
    ("release_unknown_jobs", lambda s: (
        "SELECT * FROM queuert.release_unknown_jobs('w', %s)", (s.held,))),
    ("fail_jobs", lambda s: (
        "SELECT * FROM queuert.fail_jobs('w', %s, %s)", (s.held, ["boom"] * len(s.held)))),
    ("complete", lambda s: ("SELECT * FROM queuert.complete(%s, 'w')", (s.held[0],))),
    ("complete of a fan-in parent", lambda s: (
        "SELECT * FROM queuert.complete(%s, 'w')", (s.held_parents[0],))),
    ("fail", lambda s: ("SELECT * FROM queuert.fail(%s, 'w', 'boom')", (s.held[0],))),
    ("continue_with", lambda s: (
        "SELECT * FROM queuert.continue_with(%s, 'w', 'next')", (s.held[0],))),
    ("continue_with blockers", lambda s: (
        "SELECT * FROM queuert.continue_with(%s, 'w', 'next', blockers => %s)",
        (s.held[1], s.roots))),
    ("start_chain", lambda s: ("SELECT * FROM queuert.start_chain('x')", None)),
    ("start_chain dedup", lambda s: (
        "SELECT * FROM queuert.start_chain('d', dedup_key => 'k17')", None)),
    ("start_chain dedup any", lambda s: (
        "SELECT * FROM queuert.start_chain('d', dedup_key => 'k18', dedup_scope => 'any')", None)),
    ("start_chain blockers", lambda s: (
        "SELECT * FROM queuert.start_chain('x', blockers => %s)", (s.roots,))),
    ("start_chains", lambda s: (
        "SELECT count(*) FROM queuert.start_chains(%s::jsonb)",
        (json.dumps([{"type_name": "x"}] * 100),))),
    ("start_chains dedup and blockers", lambda s: (
        "SELECT count(*) FROM queuert.start_chains(%s::jsonb)",
        (json.dumps([{"type_name": "d", "dedup_key": f"k{i}", "blockers": [str(s.roots[0])]}
                     for i in range(100)]),))),
    ("trigger_jobs", lambda s: ("SELECT * FROM queuert.trigger_jobs(%s)", (s.pending,))),
    ("retry_jobs", lambda s: ("SELECT * FROM queuert.retry_jobs(%s)", (s.failed,))),
    ("cancel_chains", lambda s: ("SELECT * FROM queuert.cancel_chains(%s)", (s.pending,))),
    ("cancel_chains cascade", lambda s: (
        "SELECT * FROM queuert.cancel_chains(%s, true)", ([s.solo_child],))),
    ("delete_chains", lambda s: ("SELECT * FROM queuert.delete_chains(%s)", (s.pending,))),
    ("delete_chains cascade", lambda s: (
        "SELECT * FROM queuert.delete_chains(%s, true)", ([s.solo_child],))),
    ("fire_schedules", lambda s: ("SELECT * FROM queuert.fire_schedules(NULL)", None)),
    ("prune", lambda s: ("SELECT * FROM queuert.prune(interval '0', 100, interval '0')", None)),
    ("chain view", lambda s: ("SELECT * FROM queuert.chain WHERE chain_id = %s", (s.pending[0],))),
    ("chain_jobs", lambda s: ("SELECT * FROM queuert.chain_jobs(%s)", (s.pending[0],))),
    # Sent by the worker itself (python_client worker.py): its running jobs
    # after a reconnect.
    ("worker: own running jobs", lambda s: (
        "SELECT id, attempt, type_name FROM queuert.job WHERE status = 'running' AND leased_by = %s",
        ("w",))),
]


def check_all(conn: Conn, state: State) -> list[str]:
    indexes = index_table(conn)
    failures = []
    for name, make in CALLS:
        query, params = make(state)
        for problem in problems(run_with_plans(conn, query, params), indexes):
            failures.append(f"{name}: {problem}")
    return failures


def warm_up(conn: Conn, state: State) -> dict[str, list[dict[str, Any]]]:
    """Every call once, on the few rows the table holds now: the session
    plans (and PL/pgSQL caches) each statement as it first runs. Returns
    each call's plans."""
    plans = {}
    for name, make in CALLS:
        query, params = make(state)
        try:
            plans[name] = run_with_plans(conn, query, params)
        except psycopg.Error as e:  # a call that cannot run on so few rows
            raise AssertionError(f"{name} failed on a small table: {e}") from e
    return plans


def candidate_scan(plans: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """The plan nodes of claim's candidate scan (its ordered SKIP LOCKED query)."""
    for plan in plans:
        text = plan["Query Text"]
        if "SKIP LOCKED" in text and "ORDER BY j.priority DESC, j.scheduled_at, j.seq" in text:
            return [(n["Node Type"], n.get("Index Name")) for n in nodes(plan["Plan"])]
    raise AssertionError("no candidate scan among the plans")


def statistics_of(conn: Conn) -> dict[str, Any]:
    row = conn.execute(
        "SELECT c.reltuples, (SELECT count(*) FROM pg_statistic s WHERE s.starelid = c.oid),"
        " s.last_analyze, s.last_autoanalyze"
        " FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid"
        " WHERE c.oid = 'queuert.job'::regclass"
    ).fetchone()
    assert row is not None
    return dict(zip(("reltuples", "stat_rows", "analyzed", "autoanalyzed"), row))


@pytest.fixture
def db(dsn: str) -> Iterator[Conn]:
    with psycopg.connect(dsn, autocommit=True) as admin:
        for table in ("job", "job_blocker", "job_type", "dedup_guard"):
            admin.execute(f"ALTER TABLE queuert.{table} SET (autovacuum_enabled = off)")
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


def test_cold_backlog_keeps_every_statement_on_its_index(db: Conn) -> None:
    before = statistics_of(db)
    assert before["reltuples"] < 0 and before["stat_rows"] == 0, before  # a fresh install
    state = load(db, BACKLOG)
    enable_auto_explain(db)
    failures = check_all(db, state)
    after = statistics_of(db)
    assert after["stat_rows"] == 0 and after["autoanalyzed"] is None, after  # still cold
    assert failures == [], "\n".join(failures)


@pytest.mark.parametrize("analyzed_while_tiny", [False, True], ids=["empty-session", "tiny-session"])
def test_session_that_planned_before_the_backlog_keeps_no_bad_plan(
    db: Conn, analyzed_while_tiny: bool
) -> None:
    """One session runs every call while the table holds its first few jobs
    (never analyzed, or analyzed and vacuumed as autovacuum would after the
    first 50 changes) and so caches its plans; then 20,000 jobs arrive from
    another session and the same session runs every call again."""
    few = load(db, A_FEW)
    if analyzed_while_tiny:
        db.execute("VACUUM ANALYZE queuert.job")
        db.execute("VACUUM ANALYZE queuert.job_blocker")
        assert statistics_of(db)["reltuples"] < 100
    enable_auto_explain(db)
    before = candidate_scan(warm_up(db, few)["claim one of a type"])
    pid = db.execute("SELECT pg_backend_pid()").fetchone()
    with psycopg.connect(db.info.dsn, autocommit=True) as producer:
        state = load(producer, BACKLOG)
    assert db.execute("SELECT pg_backend_pid()").fetchone() == pid  # the same session
    after = candidate_scan(run_with_plans(db, "SELECT id FROM queuert.claim('c', '{t1}', 1)"))
    # the plan cached on the small table is the one that runs on the backlog,
    # and it is the ordered walk of job_claim_idx
    assert before == after, (before, after)
    assert ("Index Scan", "job_claim_idx") in after and ("Sort", None) not in after, after
    failures = check_all(db, state)
    assert failures == [], "\n".join(failures)


def test_burst_after_statistics_said_nothing_is_pending(db: Conn) -> None:
    """Analyzed with 50,000 completed jobs and almost nothing pending or
    blocked, then the burst: the statistics now say pending rows are rare."""
    db.execute(
        """
        INSERT INTO queuert.job (id, type_name, chain_id, chain_type_name, chain_index,
            status, scheduled_at, completed_at, attempt)
        SELECT u, 't0', u, 't0', 0, 'completed', now(), now(), 1
        FROM (SELECT gen_random_uuid() AS u FROM generate_series(1, 50000)) AS g
        """
    )
    few = load(db, A_FEW)
    db.execute("VACUUM ANALYZE queuert.job")
    db.execute("VACUUM ANALYZE queuert.job_blocker")
    enable_auto_explain(db)
    warm_up(db, few)
    state = load(db, BACKLOG)
    failures = check_all(db, state)
    assert failures == [], "\n".join(failures)


def test_backlog_after_truncate(db: Conn) -> None:
    """TRUNCATE forgets the table's size but keeps its column statistics."""
    load(db, BACKLOG)
    db.execute("VACUUM ANALYZE queuert.job")
    db.execute("VACUUM ANALYZE queuert.job_blocker")
    db.execute("TRUNCATE queuert.job, queuert.job_blocker")
    assert statistics_of(db)["stat_rows"] > 0
    state = load(db, BACKLOG)
    enable_auto_explain(db)
    failures = check_all(db, state)
    assert failures == [], "\n".join(failures)
