"""The SQLite engine's calls shaped for the worker: claim_for_worker (the
worker's claim columns, no dict per job) and continue_jobs (continue_with
for many jobs in one transaction, an outcome per job). SQLite only: the
PostgreSQL worker sends claim and continue_with themselves."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from uuid import UUID

import pytest

import queuert._sqlite as qs
from queuert._sqlite.claim import WorkerClaim
from queuert.errors import ChainNotFoundError, InvalidArgumentError, JobTakenError


def test_claim_for_worker_returns_the_worker_columns_in_claim_order(db_path: str) -> None:
    conn = qs.connect(db_path)
    first = qs.start_chain(conn, "t", {"n": 1})
    urgent = qs.start_chain(conn, "t", {"n": 2}, priority=5)
    blocker = qs.start_chain(conn, "b", None)
    waiting = qs.start_chain(conn, "t", None, blockers=[blocker["chain_id"]])
    qs.complete(conn, blocker["id"], None, {"ok": True})
    claimed = qs.claim_for_worker(conn, "w1", ["t"], 10, timedelta(seconds=30))
    assert [c[0] for c in claimed] == [urgent["id"], first["id"], waiting["id"]], "priority, then FIFO"
    (job_id, type_name, chain_id, chain_type, index, input_, priority, attempt,
     scheduled_at, created_at, leased_until, error, trace, blockers, seq, now) = claimed[0]
    assert isinstance(job_id, UUID) and chain_id == job_id and type_name == chain_type == "t"
    assert (index, input_, priority, attempt, error, trace) == (0, {"n": 2}, 5, 1, None, None)
    assert leased_until - now == timedelta(seconds=30), "the claim's clock comes back with the lease"
    assert scheduled_at <= created_at + timedelta(seconds=1) and isinstance(seq, int)
    ((done_blocker,),) = [json.loads(claimed[2][13])]
    # the shared keys, and for tracing (migration 0004) its trace, when it
    # completed and the span that completed it (none given here)
    assert done_blocker.pop("completed_at") is not None
    assert done_blocker == {
        "chain_id": str(blocker["chain_id"]),
        "type_name": "b",
        "output": {"ok": True},
        "trace_context": None,
        "resolved_trace_context": None,
    }
    assert json.loads(claimed[1][13]) == []
    row = conn.execute("SELECT status, leased_by, attempt FROM queuert_job WHERE id = ?", (str(job_id),)).fetchone()
    assert row == ("running", "w1", 1)
    assert qs.claim_for_worker(conn, "w2", ["t"], 10) == [], "nothing left to claim"


def test_claim_for_worker_takes_only_its_types_whatever_the_filter_shape(db_path: str) -> None:
    """One statement, the filter a parameter (any type, a list, a worker's
    one type by equality): each shape claims only what it names, in claim
    order."""
    conn = qs.connect(db_path)
    a1 = qs.start_chain(conn, "a", None)["id"]
    b1 = qs.start_chain(conn, "b", None)["id"]
    c1 = qs.start_chain(conn, "c", None)["id"]
    a2 = qs.start_chain(conn, "a", None, priority=1)["id"]
    d1 = qs.start_chain(conn, "d", None)["id"]
    assert [c[0] for c in qs.claim_for_worker(conn, "w1", ("a",), 10)] == [a2, a1], "one type (a worker's tuple)"
    assert [c[0] for c in qs.claim_for_worker(conn, "w1", ("x",), 10)] == []
    assert [c[0] for c in qs.claim_for_worker(conn, "w1", ["b", "c"], 10)] == [b1, c1], "a list of types"
    assert [c[0] for c in qs.claim_for_worker(conn, "w1", None, 10)] == [d1], "any type"


@pytest.mark.parametrize("one_at_a_time", [True, False])
def test_a_prepared_worker_claim_takes_only_its_types_whatever_the_filter_shape(
    db_path: str, one_at_a_time: bool
) -> None:
    """WorkerClaim of one job (claim_for_worker_one_job, `=`) or of many
    (claim_for_worker, IN), for each filter shape: only the named types, in
    claim order, jobs of other types ahead of them in the claim index left
    pending."""
    conn = qs.connect(db_path)
    made = {
        name: qs.start_chain(conn, name[0], None, priority=int(name[1]))["id"]
        for name in ("x9", "a0", "b0", "c2", "a1", "d0", "x5")
    }

    def drain(claim: WorkerClaim) -> list[UUID]:
        taken: list[UUID] = []
        with qs.transaction(conn):
            while batch := claim(conn, 1 if one_at_a_time else 10):
                taken += [c[0] for c in batch]
                if not one_at_a_time:
                    break
        return taken

    names = [[made[n] for n in group] for group in (["a1", "a0"], ["c2", "b0"], ["x9", "x5", "d0"])]
    assert drain(WorkerClaim("w1", ("a",), None)) == names[0], "one type (a worker's tuple)"
    assert drain(WorkerClaim("w1", ("q",), None)) == []
    assert drain(WorkerClaim("w1", ("b", "c"), None)) == names[1], "a list of types"
    assert drain(WorkerClaim("w1", None, None)) == names[2], "any type"


def test_a_prepared_worker_claim_answers_as_claim_for_worker(db_path: str) -> None:
    """WorkerClaim (the worker store's claim, its arguments checked once)
    returns claim_for_worker's tuples in claim order, each job's id and
    chain id as stored beside them, and the same on a connection whose row
    and text factories a handler changed; its arguments are refused as
    claim's are."""
    conn = qs.connect(db_path)
    low = qs.start_chain(conn, "t", {"n": 1})["id"]
    high = qs.start_chain(conn, "t", {"n": 2}, priority=3)["id"]
    other = qs.start_chain(conn, "u", None)["id"]
    claim = WorkerClaim("w1", ("t",), timedelta(seconds=30))
    texts: list[tuple[str, str]] = []
    with qs.transaction(conn):
        claimed = claim(conn, 1, texts)  # one job of one type: its own statement (= instead of IN)
        claimed += claim(conn, 10, texts)
    assert [c[0] for c in claimed] == [high, low], "claim order, its one type only"
    assert texts == [(str(high), str(high)), (str(low), str(low))]
    assert claimed[0][5] == {"n": 2} and claimed[0][7] == 1 and claimed[0][10] - claimed[0][15] == timedelta(seconds=30)
    conn.row_factory = sqlite3.Row
    conn.text_factory = bytes
    texts.clear()
    with qs.transaction(conn):
        (row,) = WorkerClaim("w1", None, None)(conn, 5, texts)
    assert row[0] == other and row[1] == "u" and texts == [(str(other), str(other))]
    conn.row_factory = None
    conn.text_factory = str
    with qs.transaction(conn):
        assert claim(conn, 1) == [], "nothing left"
    with pytest.raises(InvalidArgumentError, match="max_jobs"):
        with qs.transaction(conn):
            claim(conn, 0)
    with pytest.raises(InvalidArgumentError, match="worker_id"):
        WorkerClaim("", None, None)
    with pytest.raises(InvalidArgumentError, match="lease"):
        WorkerClaim("w1", None, timedelta(0))


def test_continue_jobs_continues_each_and_reports_the_lost_and_the_refused(db_path: str) -> None:
    conn = qs.connect(db_path)
    for n in range(4):
        qs.start_chain(conn, "t", {"n": n})
    jobs = qs.claim_for_worker(conn, "w1", ["t"], 4)
    ids = [j[0] for j in jobs]
    # the third was reaped and taken by another worker meanwhile
    conn.execute("UPDATE queuert_job SET leased_by = 'w2' WHERE id = ?", (str(ids[2]),))
    rows = qs.continue_jobs(
        conn,
        "w1",
        ids,
        [
            {"type_name": "next", "input": {"from": 0}},
            {"type_name": "next", "input": {"from": 1}, "schedule_after": timedelta(hours=1)},
            {"type_name": "next"},
            {"type_name": "next", "blockers": [UUID(int=7)]},
        ],
        [j[7] for j in jobs],
    )
    assert [r["outcome"] for r in rows] == ["continued", "continued", "taken", "refused"]
    assert [r["next"]["status"] for r in rows[:2]] == ["pending", "pending"]
    assert rows[1]["next"]["scheduled_at"] > rows[0]["next"]["scheduled_at"] + timedelta(minutes=59)
    assert isinstance(rows[2]["error"], JobTakenError)
    assert isinstance(rows[3]["error"], ChainNotFoundError), "a missing blocker refuses that job only"
    states = dict(conn.execute("SELECT id, status FROM queuert_job WHERE chain_index = 0").fetchall())
    assert [states[str(i)] for i in ids] == ["completed", "completed", "running", "running"]
    assert conn.execute("SELECT count(*) FROM queuert_job WHERE type_name = 'next'").fetchone() == (2,)

    again = qs.continue_jobs(conn, "w1", ids[:1], [{"type_name": "next", "input": {"from": 0}}], [jobs[0][7]])
    assert again[0]["outcome"] == "continued" and again[0]["next"]["id"] == rows[0]["next"]["id"], (
        "a repeated flush returns the existing next job"
    )
    assert again[0]["next"]["deduplicated"] is True


def test_running_jobs_lists_what_runs_under_a_worker(db_path: str) -> None:
    conn = qs.connect(db_path)
    for n in range(3):
        qs.start_chain(conn, "t", {"n": n})
    mine = qs.claim_for_worker(conn, "w1", ["t"], 2)
    qs.claim_for_worker(conn, "w2", ["t"], 1)
    found = sorted(qs.running_jobs(conn, "w1"), key=lambda r: r["id"])
    assert found == sorted(({"id": j[0], "attempt": 1, "type_name": "t"} for j in mine), key=lambda r: r["id"])
    qs.complete_jobs(conn, "w1", [mine[0][0]], attempts=[1])
    assert [r["id"] for r in qs.running_jobs(conn, "w1")] == [mine[1][0]]
    assert qs.running_jobs(conn, "w3") == []


def test_complete_one_completes_resolves_fan_in_and_reports_a_lost_job(db_path: str) -> None:
    conn = qs.connect(db_path)
    blocker = qs.start_chain(conn, "t", None)
    waiting = qs.start_chain(conn, "after", None, blockers=[blocker["chain_id"]])
    other = qs.start_chain(conn, "t", None)
    jobs = qs.claim_for_worker(conn, "w1", ["t"], 2)
    assert qs.complete_one(conn, "w1", jobs[0][0], '{"ok": true}', 1) == ("completed", ["after"])
    row = conn.execute("SELECT status, output, completed_by FROM queuert_job WHERE id = ?", (str(blocker["id"]),))
    assert row.fetchone() == ("completed", '{"ok": true}', "w1"), "the output stored as the JSON text given"
    assert conn.execute("SELECT status FROM queuert_job WHERE id = ?", (str(waiting["id"]),)).fetchone() == ("pending",)
    assert qs.complete_one(conn, "w1", other["id"], None, 2) == ("taken", []), "a stale attempt is fenced"
    assert qs.complete_one(conn, "w1", blocker["id"], None, 1) == ("finished", [])
