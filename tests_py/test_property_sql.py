"""Property-based test of the SQL API: random operation sequences from three
sessions, with the whole table checked against the engine's invariants after
every step. complete, continue_with and fail are called by the owner, by
another worker, at a stale attempt or from outside; each call's outcome is
predicted from the job's row before it (fencing, DESIGN.md): a call the
engine must refuse has to fail with the predicted SQLSTATE and leave every
row as it was, and a call it must accept has to succeed.

Operations: start_chain / start_chains (blockers on existing chains and on
earlier batch items, dedup keys), claim, complete, continue_with (loops and
branches), fail, lease expiry + reap, cancel_chains / delete_chains (with and
without cascade), retry_jobs, trigger_jobs, and an interleaved step where one
session holds an open transaction while another works (lock_timeout keeps a
lock wait from hanging the single-threaded test). QU errors are expected
outcomes of invalid operations; any other SQLSTATE fails the test.

Set HYPOTHESIS_PROFILE=ci for a derandomized run.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import psycopg
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[tuple[Any, ...]]

settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "dev", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

TYPES = ["a", "b", "c"]
MAX_ATTEMPTS: dict[str, int | None] = {"a": 2, "b": 3, "c": None}
WORKERS = ["w1", "w2", "w3"]
DEDUP_KEYS = [None, None, "k1", "k2"]

# Which status a job may have next, observed between two steps. A job that
# disappears must have been deleted by delete_chains.
ALLOWED: dict[str, set[str]] = {
    "blocked": {"blocked", "pending", "completed", "cancelled"},
    "pending": {"pending", "running", "completed", "failed", "cancelled"},
    "running": {"running", "pending", "completed", "failed", "cancelled"},
    "completed": {"completed"},
    "failed": {"failed", "pending", "blocked", "cancelled"},
    "cancelled": {"cancelled", "pending", "blocked"},
}


class EngineMachine(RuleBasedStateMachine):
    dsn: str = ""
    sessions: list[Conn] = []
    admin: Conn | None = None

    def __init__(self) -> None:
        super().__init__()
        admin = self.admin
        assert admin is not None
        for s in self.sessions:
            s.rollback() if s.info.transaction_status != psycopg.pq.TransactionStatus.IDLE else None
        admin.execute("TRUNCATE queuert.job_blocker, queuert.job, queuert.job_type, queuert.job_running_slot,"
                      " queuert.job_rate_slot, queuert.dedup_guard")
        for t in TYPES:
            # backoff 0: a failed attempt is due again at once
            admin.execute(
                "SELECT queuert.set_job_type(%s, max_attempts => %s, backoff_initial => '0', backoff_max => '0')",
                (t, MAX_ATTEMPTS[t]),
            )
        self.prev: dict[uuid.UUID, tuple[str, int]] = {}
        self.deleted_ok: set[uuid.UUID] = set()
        self.reset_ok: set[uuid.UUID] = set()

    # ------------------------------------------------------------ plumbing

    def api(self, session: int, query: str, params: Any = ()) -> list[tuple[Any, ...]] | None:
        """Run one call in autocommit on a session; a QU error gives None."""
        return self.call(session, query, params)[0]

    def call(self, session: int, query: str, params: Any = ()) -> tuple[list[tuple[Any, ...]] | None, str | None]:
        """Run one call in autocommit on a session: (rows, None) or (None, its QU SQLSTATE)."""
        c = self.sessions[session]
        try:
            return c.execute(query, params).fetchall(), None
        except psycopg.Error as exc:
            assert exc.sqlstate is not None and exc.sqlstate.startswith("QU"), (
                f"unexpected {exc.sqlstate}: {exc}\n  {query} {params!r}"
            )
            return None, exc.sqlstate

    def snapshot(self) -> tuple[Any, ...]:
        """Every job and blocker row, as text: equal snapshots, nothing changed."""
        assert self.admin is not None
        row = self.admin.execute(
            "SELECT (SELECT coalesce(string_agg(j::text, '|' ORDER BY j.id), '') FROM queuert.job AS j),"
            " (SELECT coalesce(string_agg(b::text, '|' ORDER BY b.job_id, b.position), '')"
            "    FROM queuert.job_blocker AS b)"
        ).fetchone()
        assert row is not None
        return tuple(row)

    def job_row(self, job: uuid.UUID) -> dict[str, Any] | None:
        assert self.admin is not None
        cur = self.admin.execute(
            "SELECT status::text, leased_by, attempt, continued_to, completed_by, output, type_name, chain_id"
            " FROM queuert.job WHERE id = %s",
            (job,),
        )
        row = cur.fetchone()
        if row is None:
            return None
        assert cur.description is not None
        return {d.name: v for d, v in zip(cur.description, row)}

    @staticmethod
    def fencing_refusal(
        job: dict[str, Any] | None, worker: str | None, attempt: int | None, outside: tuple[str, ...]
    ) -> str | None:
        """The SQLSTATE the engine must refuse this caller with (complete,
        continue_with, fail), or None where it must accept: a worker only on
        a job running under it, an outside call only in ``outside``
        statuses, a given attempt only if it is the job's current one."""
        if job is None:
            return "QU001"
        if worker is not None:
            if job["status"] != "running":
                return "QU003"
            if job["leased_by"] != worker:
                return "QU004"
        elif job["status"] not in outside:
            return "QU003"
        if attempt is not None and attempt != job["attempt"]:
            return "QU004"
        return None

    def assert_refused(self, code: str | None, expected: str, before: tuple[Any, ...], what: str) -> None:
        assert code == expected, f"{what}: expected {expected}, got {code or 'success'}"
        assert self.snapshot() == before, f"{what}: refused with {code}, but rows changed"

    def ids(self, where: str = "true") -> list[uuid.UUID]:
        assert self.admin is not None
        return [r[0] for r in self.admin.execute(f"SELECT id FROM queuert.job WHERE {where} ORDER BY seq").fetchall()]

    def chains(self) -> list[uuid.UUID]:
        return self.ids("chain_index = 0")

    def pick(self, data: st.DataObject, pool: list[uuid.UUID], label: str) -> uuid.UUID:
        return data.draw(st.sampled_from(pool) if pool else st.uuids(), label=label)

    def pick_some(self, data: st.DataObject, pool: list[uuid.UUID], label: str, max_size: int = 3) -> list[uuid.UUID]:
        if not pool:
            return []
        return data.draw(st.lists(st.sampled_from(pool), max_size=max_size), label=label)

    # --------------------------------------------------------------- rules

    @rule(
        data=st.data(),
        session=st.integers(0, 2),
        type_name=st.sampled_from(TYPES),
        dedup_key=st.sampled_from(DEDUP_KEYS),
        scope=st.sampled_from(["incomplete", "any"]),
    )
    def start_chain(self, data: st.DataObject, session: int, type_name: str, dedup_key: str | None, scope: str) -> None:
        blockers = self.pick_some(data, self.chains(), "blockers")
        rows = self.api(
            session,
            "SELECT id, status, deduplicated FROM queuert.start_chain(%s, %s, blockers => %s,"
            " dedup_key => %s, dedup_scope => %s)",
            (type_name, Jsonb({"n": len(self.prev)}), blockers, dedup_key, scope),
        )
        assert rows is not None and len(rows) == 1  # existing blockers, valid args: never an error

    @rule(data=st.data(), session=st.integers(0, 2), n=st.integers(1, 4))
    def start_chains(self, data: st.DataObject, session: int, n: int) -> None:
        existing = self.chains()
        items: list[dict[str, Any]] = []
        for i in range(n):
            item: dict[str, Any] = {"type_name": data.draw(st.sampled_from(TYPES), label="type"), "id": str(uuid.uuid4())}
            key = data.draw(st.sampled_from(DEDUP_KEYS), label="key")
            if key is not None:
                item["dedup_key"] = key
            pool = [str(x) for x in existing] + [it["id"] for it in items[:i]]
            if pool:
                item["blockers"] = data.draw(st.lists(st.sampled_from(pool), max_size=3), label="blockers")
            items.append(item)
        rows = self.api(session, "SELECT ord, id, status FROM queuert.start_chains(%s)", (Jsonb(items),))
        assert rows is not None and [r[0] for r in rows] == list(range(1, n + 1))

    @rule(session=st.integers(0, 2), worker=st.sampled_from(WORKERS), max_jobs=st.integers(1, 3))
    def claim(self, session: int, worker: str, max_jobs: int) -> None:
        rows = self.api(session, "SELECT id, status, leased_by, attempt FROM queuert.claim(%s, max_jobs => %s)",
                        (worker, max_jobs))
        assert rows is not None and len(rows) <= max_jobs
        for job_id, status, leased_by, attempt in rows:
            assert status == "running" and leased_by == worker
            assert attempt == self.prev.get(job_id, ("", 0))[1] + 1

    def _running(self) -> list[uuid.UUID]:
        return self.ids("status = 'running'")

    def _owner(self, job: uuid.UUID) -> tuple[str | None, int | None]:
        assert self.admin is not None
        row = self.admin.execute("SELECT leased_by, attempt FROM queuert.job WHERE id = %s", (job,)).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def _as(self, data: st.DataObject, job: uuid.UUID) -> tuple[str | None, int | None]:
        """Who calls: usually the owner at its attempt, sometimes another
        worker (never the owner), a stale attempt or an outside (workerless) call."""
        owner, attempt = self._owner(job)
        how = data.draw(st.sampled_from(["owner", "owner", "owner", "other", "stale", "outside"]), label="as")
        if how == "other":
            return data.draw(st.sampled_from([w for w in WORKERS if w != owner]), label="worker"), None
        if how == "stale" and attempt is not None:
            return owner, attempt - 1
        if how == "outside":
            return None, None
        return owner, attempt

    @precondition(lambda self: bool(self.prev))  # a job to act on (unknown ids: test_hostile_input)
    @rule(data=st.data(), session=st.integers(0, 2))
    def complete(self, data: st.DataObject, session: int) -> None:
        job = self.pick(data, self._running() or self.ids(), "job")
        worker, attempt = self._as(data, job)
        pre = self.job_row(job)
        expected = self.fencing_refusal(pre, worker, attempt, ("blocked", "pending", "running"))
        event(f"complete: {expected or 'accepted'}")
        before = self.snapshot()
        rows, code = self.call(session, "SELECT id, status FROM queuert.complete(%s, %s, %s, %s)",
                               (job, worker, Jsonb({"done": True}), attempt))
        if expected is not None:
            self.assert_refused(code, expected, before, f"complete({worker}, attempt {attempt}) of {pre}")
            return
        assert code is None, f"complete by {worker} at attempt {attempt} of {pre} refused with {code}"
        assert rows == [(job, "completed")]
        post = self.job_row(job)
        assert post is not None
        assert (post["status"], post["output"], post["completed_by"], post["leased_by"]) == (
            "completed", {"done": True}, worker, None,
        )

    @precondition(lambda self: bool(self.prev))  # a job to act on (unknown ids: test_hostile_input)
    @rule(data=st.data(), session=st.integers(0, 2), loop=st.booleans())
    def continue_with(self, data: st.DataObject, session: int, loop: bool) -> None:
        job = self.pick(data, self._running() or self.ids(), "job")
        worker, attempt = self._as(data, job)
        pre = self.job_row(job)
        type_name = pre["type_name"] if (pre and loop) else data.draw(st.sampled_from(TYPES), label="next type")
        blockers = self.pick_some(data, self.chains(), "blockers", max_size=2)
        repeat = pre is not None and pre["status"] == "completed" and pre["continued_to"] is not None
        if repeat and (
            (worker is not None and pre["completed_by"] == worker and attempt in (None, pre["attempt"]))  # type: ignore[index]
            or (worker is None and pre["completed_by"] is None)  # type: ignore[index]
        ):
            expected: str | None = "same next job"
        elif repeat:
            expected = "QU004"  # continued by someone else (a worker, or the outside)
        else:
            expected = self.fencing_refusal(pre, worker, attempt, ("blocked", "pending", "running"))
            if expected is None and pre is not None and pre["chain_id"] in blockers:
                expected = "QU006"  # blocked on its own chain
        event(f"continue_with: {expected or 'accepted'}")
        before = self.snapshot()
        rows, code = self.call(
            session,
            "SELECT id, chain_index, status, deduplicated FROM queuert.continue_with("
            "%s, %s, %s, blockers => %s, attempt => %s)",
            (job, worker, type_name, blockers, attempt),
        )
        what = f"continue_with({worker}, attempt {attempt}, blockers {blockers}) of {pre}"
        if expected == "same next job":
            assert pre is not None and code is None, f"{what}: refused with {code}"
            assert rows is not None and [(r[0], r[3]) for r in rows] == [(pre["continued_to"], True)], what
            assert self.snapshot() == before, f"{what}: a repeated continuation changed rows"
        elif expected is not None:
            self.assert_refused(code, expected, before, what)
        else:
            assert pre is not None and code is None and rows is not None, f"{what}: refused with {code}"
            assert len(rows) == 1 and rows[0][3] is False
            post = self.job_row(job)
            assert post is not None
            assert (post["status"], post["continued_to"], post["completed_by"]) == ("completed", rows[0][0], worker)

    @precondition(lambda self: bool(self.prev))  # a job to act on (unknown ids: test_hostile_input)
    @rule(data=st.data(), session=st.integers(0, 2))
    def fail(self, data: st.DataObject, session: int) -> None:
        job = self.pick(data, self._running() or self.ids(), "job")
        worker, attempt = self._as(data, job)
        pre = self.job_row(job)
        expected = self.fencing_refusal(pre, worker, attempt, ("pending", "running"))
        event(f"fail: {expected or 'accepted'}")
        before = self.snapshot()
        rows, code = self.call(session, "SELECT id, status FROM queuert.fail(%s, %s, 'boom', attempt => %s)",
                               (job, worker, attempt))
        if expected is not None:
            self.assert_refused(code, expected, before, f"fail({worker}, attempt {attempt}) of {pre}")
            return
        assert pre is not None and code is None, f"fail by {worker} at attempt {attempt} of {pre} refused with {code}"
        max_attempts = MAX_ATTEMPTS[pre["type_name"]]
        spent = max_attempts is not None and pre["attempt"] >= max_attempts
        assert rows == [(job, "failed" if spent else "pending")]

    @rule(data=st.data(), session=st.integers(0, 2))
    def expire_and_reap(self, data: st.DataObject, session: int) -> None:
        running = self._running()
        expired = self.pick_some(data, running, "expire")
        assert self.admin is not None
        self.admin.execute(
            "UPDATE queuert.job SET leased_until = clock_timestamp() - interval '1 second' WHERE id = ANY(%s)",
            (expired,),
        )
        rows = self.api(session, "SELECT job_id, status FROM queuert.reap()")
        assert rows is not None
        assert {r[0] for r in rows} == set(expired)
        assert all(r[1] in ("pending", "failed") for r in rows)

    @rule(data=st.data(), session=st.integers(0, 2), cascade=st.booleans())
    def cancel_chains(self, data: st.DataObject, session: int, cascade: bool) -> None:
        targets = self.pick_some(data, self.ids("chain_completed_at IS NULL AND chain_index = 0") or self.chains(),
                                 "chains")
        self.api(session, "SELECT * FROM queuert.cancel_chains(%s::uuid[], %s)", (targets, cascade))

    @rule(data=st.data(), session=st.integers(0, 2), cascade=st.booleans())
    def delete_chains(self, data: st.DataObject, session: int, cascade: bool) -> None:
        targets = self.pick_some(data, self.chains(), "chains", max_size=2)
        rows = self.api(session, "SELECT chain_id FROM queuert.delete_chains(%s::uuid[], %s)", (targets, cascade))
        if rows:
            self.deleted_ok |= {r[0] for r in rows}

    @rule(data=st.data(), session=st.integers(0, 2))
    def retry_jobs(self, data: st.DataObject, session: int) -> None:
        pool = self.ids("status IN ('failed', 'cancelled')")
        if pool and data.draw(st.integers(0, 3), label="valid only") > 0:
            targets = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2), label="jobs")
        else:
            targets = self.pick_some(data, pool + self.ids(), "jobs")
        rows = self.api(session, "SELECT job_id FROM queuert.retry_jobs(%s::uuid[])", (targets,))
        if rows is not None:
            assert [r[0] for r in rows] == list(dict.fromkeys(targets))
            self.reset_ok |= set(targets)

    @rule(data=st.data(), session=st.integers(0, 2))
    def trigger_jobs(self, data: st.DataObject, session: int) -> None:
        pool = self.ids("status = 'pending'")
        targets = self.pick_some(data, pool or self.ids(), "jobs")
        self.api(session, "SELECT job_id FROM queuert.trigger_jobs(%s::uuid[])", (targets,))

    @rule(a=st.integers(0, 2), b=st.integers(0, 2), worker=st.sampled_from(WORKERS), commit=st.booleans(),
          type_name=st.sampled_from(TYPES))
    def interleaved(self, a: int, b: int, worker: str, commit: bool, type_name: str) -> None:
        """Session a claims and starts a chain in an open transaction while
        session b claims: b never gets a's job; a commits or rolls back."""
        if a == b:
            b = (a + 1) % 3
        ca, cb = self.sessions[a], self.sessions[b]
        ca.execute("BEGIN")
        try:
            mine = [r[0] for r in ca.execute("SELECT id FROM queuert.claim(%s, max_jobs => 2)", (worker,)).fetchall()]
            ca.execute("SELECT * FROM queuert.start_chain(%s)", (type_name,))
            other = self.api(b, "SELECT id FROM queuert.claim('w-other', max_jobs => 2)") or []
            assert not set(mine) & {r[0] for r in other}, "a job claimed by two sessions"
        finally:
            ca.execute("COMMIT" if commit else "ROLLBACK")

    # ---------------------------------------------------------- invariants

    @invariant()
    def table_is_consistent(self) -> None:
        admin = self.admin
        assert admin is not None
        jobs = admin.execute(
            "SELECT id, chain_id, chain_index, type_name, chain_type_name, status::text, attempt,"
            " leased_by, leased_until, continued_to, output, completed_at, open_blockers, chain_completed_at"
            " FROM queuert.job ORDER BY chain_id, chain_index"
        ).fetchall()
        by_id = {j[0]: j for j in jobs}
        chains: dict[uuid.UUID, list[tuple[Any, ...]]] = {}
        for j in jobs:
            chains.setdefault(j[1], []).append(j)

        # status transitions and attempts, against the previous step
        for job_id, (status, attempt) in self.prev.items():
            now = by_id.get(job_id)
            if now is None:
                assert self.prev_chain[job_id] in self.deleted_ok, f"job {job_id} vanished without delete_chains"
                continue
            assert now[5] in ALLOWED[status], f"job {job_id}: {status} -> {now[5]}"
            if job_id in self.reset_ok and now[5] in ("pending", "blocked") and status in ("failed", "cancelled"):
                assert now[6] == 0, f"retried job {job_id} has attempt {now[6]}"
            else:
                assert now[6] >= attempt, f"job {job_id}: attempt {attempt} -> {now[6]}"

        for chain_id, members in chains.items():
            root, last = members[0], members[-1]
            assert root[0] == chain_id and root[2] == 0, f"chain {chain_id} has no root"
            assert [m[2] for m in members] == list(range(len(members))), f"chain {chain_id}: gaps"
            for m, nxt in zip(members, members[1:]):
                assert m[5] == "completed" and m[9] == nxt[0] and m[10] is None, (
                    f"chain {chain_id}: job {m[2]} is not a completed hand-off to {nxt[2]}"
                )
            assert last[9] is None, f"chain {chain_id}: its tail has continued_to"
            assert all(m[4] == root[3] for m in members)
            complete = last[5] == "completed"
            assert (root[13] is not None) == complete, f"chain {chain_id}: chain_completed_at vs tail {last[5]}"

        blocker_rows = admin.execute(
            "SELECT b.job_id, count(*) FILTER (WHERE r.chain_completed_at IS NULL), count(*),"
            " bool_and(r.chain_index = 0)"
            " FROM queuert.job_blocker AS b JOIN queuert.job AS r ON r.id = b.blocker_chain_id GROUP BY b.job_id"
        ).fetchall()
        open_count = {r[0]: r[1] for r in blocker_rows}
        assert all(r[3] for r in blocker_rows), "a blocker edge points at a non-root job"
        for j in jobs:
            job_id, status, leased_by, leased_until, open_blockers = j[0], j[5], j[7], j[8], j[12]
            # leases only on running jobs
            assert (status == "running") == (leased_by is not None and leased_until is not None), j
            if status == "completed":
                assert j[11] is not None
            n_open = open_count.get(job_id, 0)
            if status in ("blocked", "pending", "running"):
                assert open_blockers == n_open, f"job {job_id}: open_blockers {open_blockers} but {n_open} open"
                assert (status == "blocked") == (n_open > 0), f"job {job_id} is {status} with {n_open} open blockers"

        self.prev = {j[0]: (j[5], j[6]) for j in jobs}
        self.prev_chain = {j[0]: j[1] for j in jobs}
        self.deleted_ok = set()
        self.reset_ok = set()

    prev_chain: dict[uuid.UUID, uuid.UUID] = {}


def test_engine_state_machine(dsn: str) -> None:
    sessions = [psycopg.connect(dsn, autocommit=True) for _ in range(3)]
    admin = psycopg.connect(dsn, autocommit=True)
    for s in sessions:
        s.execute("SET lock_timeout = '2s'")
    EngineMachine.dsn, EngineMachine.sessions, EngineMachine.admin = dsn, sessions, admin
    try:
        run_state_machine_as_test(
            EngineMachine,
            settings=settings(max_examples=25, stateful_step_count=30, deadline=None),
        )
    finally:
        for c in [*sessions, admin]:
            c.close()
