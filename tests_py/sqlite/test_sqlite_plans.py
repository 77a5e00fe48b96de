"""The hot statements of the SQLite engine walk their indexes, on a table of
many rows that was never ANALYZEd (no statistics to lean on), so claim,
completion and reap cost the same with a million finished rows as with none.
The PostgreSQL counterpart is tests_py/test_engine_plans.py."""

from __future__ import annotations

import sqlite3

import pytest

import queuert._sqlite as qs
from queuert._sqlite._statements import statements

PARAMS = {
    "worker_id": "w", "type_names": '["t"]', "max_jobs": 5, "lease": None, "now": 10**18,
    "requests": "[]", "chain_ids": "[]", "job_ids": "[]", "done": "[]", "done_outcome": "x",
    "type_name": "t", "dedup_key": "k", "dedup_scope": "any", "dedup_window": None, "seqs": "[]",
    "chain_set": "[]", "chain_id": "x", "job_id": "x", "action": "complete", "attempt": None,
    "outside_statuses": "[]", "blockers": "[]", "id": "x",
}

# statement -> what its plan must contain (an index walked, not a table scan)
EXPECTED = {
    "claim": ["SCAN c USING INDEX queuert_job_claim_idx"],
    "claim_for_worker": ["SCAN c USING INDEX queuert_job_claim_idx"],
    "claim_for_worker_one_job": ["SCAN c USING INDEX queuert_job_claim_idx", "SEARCH j USING INTEGER PRIMARY KEY"],
    "pick_for_worker": ["SCAN c USING INDEX queuert_job_claim_idx"],
    "claim_blockers": ["SEARCH b USING PRIMARY KEY (job_id=?)"],
    "next_due_at": ["USING INDEX queuert_job_claim_idx (priority<?)", "USING INDEX queuert_job_claim_idx (priority=?)"],
    "complete_jobs": ["SEARCH x USING INDEX sqlite_autoindex_queuert_job_1 (id=?)"],
    "fail_jobs": ["SEARCH j USING INDEX sqlite_autoindex_queuert_job_1 (id=?)"],
    "unblocked_by": ["USING COVERING INDEX queuert_job_blocker_chain_idx (blocker_chain_id=?)"],
    "reap_expired": ["SEARCH j USING INDEX queuert_job_lease_idx (leased_until<?)"],
    "find_dedup_match": ["SEARCH r USING INDEX queuert_job_dedup_idx (chain_type_name=? AND dedup_key=?)"],
    "job_for_action": ["SEARCH j USING INDEX sqlite_autoindex_queuert_job_1 (id=?)"],
    "chain": ["queuert_job_chain_position_idx (chain_id=? AND chain_index>?)"],
    "chain_set_running": ["queuert_job_chain_position_idx (chain_id=? AND chain_index>?)"],
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> sqlite3.Connection:
    path = str(tmp_path_factory.mktemp("plans") / "app.db")
    qs.migrate(path)
    conn = qs.connect(path, synchronous="OFF")
    qs.start_chains(conn, [{"type_name": "t", "input": n} for n in range(20_000)])
    claimed = [r["id"] for r in qs.claim(conn, "w", max_jobs=15_000)]
    qs.complete_jobs(conn, "w", claimed[:10_000])
    parents = qs.start_chains(conn, [{"type_name": "p", "blockers": [str(c)]} for c in claimed[10_000:]])
    assert all(p["status"] == "blocked" for p in parents)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone() == (0,)
    return conn


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hot_statements_use_their_indexes(loaded: sqlite3.Connection, name: str) -> None:
    sql = statements("queuert")[name]
    plan = "\n".join(r[3] for r in loaded.execute("EXPLAIN QUERY PLAN " + sql, PARAMS).fetchall())
    for wanted in EXPECTED[name]:
        assert wanted in plan, f"{name} plan:\n{plan}"
    assert "SCAN queuert_job" not in plan and "SCAN j\n" not in plan + "\n" and "SCAN x\n" not in plan + "\n", plan


def test_completing_a_chain_with_no_dependents_reads_no_other_edges(loaded: sqlite3.Connection) -> None:
    """The fan-in trigger finds dependents through job_blocker_chain_idx: a
    completion reads the index entries of its own chain only (virtual
    machine steps stay flat however many edges other chains have)."""
    qs.start_chains(loaded, [{"type_name": "solo"}] * 2)
    first, second = (r["id"] for r in qs.claim(loaded, "w", ["solo"], 2))
    steps = []
    for job in (first, second):
        loaded.execute("BEGIN IMMEDIATE")
        loaded.set_progress_handler(lambda: steps.append(1) and 0, 1000)  # type: ignore[func-returns-value]
        before = len(steps)
        qs.complete(loaded, job, "w")
        steps_taken = len(steps) - before
        loaded.set_progress_handler(None, 0)
        loaded.execute("COMMIT")
        assert steps_taken < 5, f"{steps_taken} thousand VM steps to complete one job"
