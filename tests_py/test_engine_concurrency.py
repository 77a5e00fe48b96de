"""Engine concurrency: real parallel sessions calling the SQL API directly.

Every test here races several psycopg connections from threads against one
fresh database and then checks invariants on the rows: jobs are never handed
out twice, never lost, never stranded in ``blocked``, and a stale worker or a
racing reaper never changes a finished job.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

Conn = psycopg.Connection[Any]


def connect(dsn: str, autocommit: bool = True) -> Conn:
    return psycopg.connect(dsn, autocommit=autocommit, row_factory=dict_row)


@pytest.fixture(autouse=True)
def _dict_rows(conn: Conn) -> None:
    conn.row_factory = dict_row


@pytest.fixture
def pool(dsn: str) -> Iterator[Callable[[int], list[Conn]]]:
    """Factory of extra connections (autocommit off), all closed afterwards."""
    opened: list[Conn] = []

    def make(n: int) -> list[Conn]:
        conns = [connect(dsn, autocommit=False) for _ in range(n)]
        opened.extend(conns)
        return conns

    yield make
    for c in opened:
        c.close()


def one(conn: Conn, query: str, params: Any = None) -> dict[str, Any]:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row


def start(conn: Conn, type_name: str, **kw: Any) -> uuid.UUID:
    args = ", ".join(f"{k} => %({k})s" for k in kw)
    sep = ", " if args else ""
    row = one(
        conn,
        f"SELECT * FROM queuert.start_chain(type_name => %(type_name)s{sep}{args})",
        {"type_name": type_name, **kw},
    )
    return row["id"]


def claim_one(conn: Conn, worker: str, type_name: str, lease: str | None = None) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT * FROM queuert.claim(worker_id => %s, type_names => %s, max_jobs => 1,"
        " lease => %s::interval)",
        (worker, [type_name], lease),
    ).fetchall()
    assert len(rows) == 1, rows
    return rows[0]


def job_row(conn: Conn, job_id: uuid.UUID) -> dict[str, Any] | None:
    return conn.execute("SELECT * FROM queuert.job WHERE id = %s", (job_id,)).fetchone()


def chain_rows(conn: Conn, chain_id: uuid.UUID) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT * FROM queuert.job WHERE chain_id = %s ORDER BY chain_index", (chain_id,)
    ).fetchall()


def run_parallel(*fns: Callable[[], Any]) -> list[Any]:
    """Run each fn in its own thread; return results (or the exceptions raised)."""

    def wrap(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - the caller inspects it
            return exc

    with ThreadPoolExecutor(max_workers=len(fns)) as ex:
        futures = [ex.submit(wrap, fn) for fn in fns]
        return [f.result() for f in futures]


def in_tx(conn: Conn, barrier: threading.Barrier, body: Callable[[Conn], Any],
          jitter: float = 0.003) -> Any:
    """Wait at the barrier, run body in a transaction, hold it briefly, commit."""
    barrier.wait()
    time.sleep(random.random() * jitter)
    try:
        result = body(conn)
        time.sleep(random.random() * jitter)
        conn.commit()
        return result
    except Exception:
        conn.rollback()
        raise


def sqlstate(exc: Any) -> str | None:
    return exc.sqlstate if isinstance(exc, psycopg.Error) else None


# ---------------------------------------------------------------- claim race


def test_eight_sessions_claim_2000_jobs_each_exactly_once(conn: Conn, dsn: str) -> None:
    items = [{"type_name": "race", "input": {"n": i}} for i in range(2000)]
    conn.execute("SELECT count(*) FROM queuert.start_chains(%s)", (json.dumps(items),))
    conn.commit()

    barrier = threading.Barrier(8)

    def worker(n: int) -> list[uuid.UUID]:
        got: list[uuid.UUID] = []
        rng = random.Random(n)
        with connect(dsn, autocommit=True) as c:
            barrier.wait()
            while True:
                batch = rng.randint(1, 20)
                rows = c.execute(
                    "SELECT id, status, attempt, leased_by FROM queuert.claim("
                    "worker_id => %s, max_jobs => %s)",
                    (f"w{n}", batch),
                ).fetchall()
                if not rows:
                    return got
                assert len(rows) <= batch
                for r in rows:
                    assert r["status"] == "running"
                    assert r["attempt"] == 1
                    assert r["leased_by"] == f"w{n}"
                got.extend(r["id"] for r in rows)

    results = run_parallel(*[lambda n=n: worker(n) for n in range(8)])
    for r in results:
        assert not isinstance(r, Exception), r
    claimed = [i for r in results for i in r]
    assert len(claimed) == 2000
    assert len(set(claimed)) == 2000
    # Work really was spread over the sessions (they raced, not queued).
    assert sum(1 for r in results if r) >= 2

    counts = conn.execute(
        "SELECT status, attempt, count(*) AS n FROM queuert.job GROUP BY 1, 2"
    ).fetchall()
    assert counts == [{"status": "running", "attempt": 1, "n": 2000}]
    by_worker = {
        r["leased_by"]: r["n"]
        for r in conn.execute(
            "SELECT leased_by, count(*) AS n FROM queuert.job GROUP BY 1"
        ).fetchall()
    }
    assert by_worker == {f"w{n}": len(r) for n, r in enumerate(results) if r}


# ------------------------------------------------------------ fan-in races


def _blocker_chain(conn: Conn, multi_step: bool) -> tuple[uuid.UUID, uuid.UUID]:
    """A running blocker chain: (chain id, id of its running last job)."""
    chain = start(conn, "blocker")
    conn.commit()
    job = claim_one(conn, "wb", "blocker")
    if multi_step:
        conn.execute(
            "SELECT * FROM queuert.continue_with(job_id => %s, worker_id => 'wb',"
            " type_name => 'blocker-step')",
            (job["id"],),
        )
        conn.commit()
        job = claim_one(conn, "wb", "blocker-step")
    conn.commit()
    return chain, job["id"]


def _complete_side(job_id: uuid.UUID) -> Callable[[Conn], Any]:
    def body(c: Conn) -> Any:
        return one(
            c,
            "SELECT * FROM queuert.complete(job_id => %s, worker_id => 'wb', output => '1')",
            (job_id,),
        )

    return body


def _assert_no_stranded(conn: Conn, dependents: list[uuid.UUID]) -> None:
    rows = conn.execute(
        "SELECT id, status, open_blockers FROM queuert.job WHERE id = ANY(%s)", (dependents,)
    ).fetchall()
    assert len(rows) == len(dependents)
    for r in rows:
        assert (r["status"], r["open_blockers"]) == ("pending", 0), r
    conn.commit()


def test_fan_in_race_start_chain_never_strands_dependent(conn: Conn, pool: Any) -> None:
    a, b = pool(2)
    dependents = []
    for i in range(50):
        chain, tail = _blocker_chain(conn, multi_step=i % 2 == 1)
        barrier = threading.Barrier(2)
        done, started = run_parallel(
            lambda: in_tx(a, barrier, _complete_side(tail)),
            lambda: in_tx(b, barrier, lambda c: start(c, "dependent", blockers=[chain])),
        )
        assert not isinstance(done, Exception), done
        assert not isinstance(started, Exception), started
        assert done["chain_completed"] is True
        dependents.append(started)
    _assert_no_stranded(conn, dependents)


def test_fan_in_race_continue_with_blockers_never_strands(conn: Conn, pool: Any) -> None:
    a, b = pool(2)
    nexts = []
    for i in range(50):
        chain, tail = _blocker_chain(conn, multi_step=i % 2 == 0)
        start(conn, "parent")
        conn.commit()
        parent = claim_one(conn, "wp", "parent")
        conn.commit()

        def cont(c: Conn, parent_id: uuid.UUID = parent["id"], blocker: uuid.UUID = chain) -> Any:
            return one(
                c,
                "SELECT * FROM queuert.continue_with(job_id => %s, worker_id => 'wp',"
                " type_name => 'parent-after', blockers => %s)",
                (parent_id, [blocker]),
            )

        barrier = threading.Barrier(2)
        done, cont_row = run_parallel(
            lambda: in_tx(a, barrier, _complete_side(tail)),
            lambda: in_tx(b, barrier, cont),
        )
        assert not isinstance(done, Exception), done
        assert not isinstance(cont_row, Exception), cont_row
        nexts.append(cont_row["id"])
    _assert_no_stranded(conn, nexts)


def test_fan_in_race_start_chains_never_strands(conn: Conn, pool: Any) -> None:
    a, b = pool(2)
    dependents = []
    for i in range(50):
        chain, tail = _blocker_chain(conn, multi_step=i % 3 == 0)
        # Besides the racing blocker, one item of the batch waits on an
        # earlier item of the same batch, which stays blocked-free here.
        first = uuid.uuid4()
        items = [
            {"type_name": "fan-out", "id": str(first)},
            {"type_name": "fan-in", "blockers": [str(chain)]},
        ]

        def batch(c: Conn, payload: str = json.dumps(items)) -> Any:
            return c.execute("SELECT * FROM queuert.start_chains(%s)", (payload,)).fetchall()

        barrier = threading.Barrier(2)
        done, rows = run_parallel(
            lambda: in_tx(a, barrier, _complete_side(tail)),
            lambda: in_tx(b, barrier, batch),
        )
        assert not isinstance(done, Exception), done
        assert not isinstance(rows, Exception), rows
        dependents.append(rows[1]["id"])
    _assert_no_stranded(conn, dependents)


def test_fan_in_race_with_two_blockers_completing_at_once(conn: Conn, pool: Any) -> None:
    """Two blocker chains complete while the dependent is being started."""
    a, b, c3 = pool(3)
    dependents = []
    for _ in range(30):
        chain1, tail1 = _blocker_chain(conn, multi_step=False)
        chain2, tail2 = _blocker_chain(conn, multi_step=True)
        barrier = threading.Barrier(3)
        r1, r2, dep = run_parallel(
            lambda: in_tx(a, barrier, _complete_side(tail1)),
            lambda: in_tx(b, barrier, _complete_side(tail2)),
            lambda: in_tx(c3, barrier, lambda c: start(c, "dep2", blockers=[chain1, chain2])),
        )
        for r in (r1, r2, dep):
            assert not isinstance(r, Exception), r
        dependents.append(dep)
    _assert_no_stranded(conn, dependents)


# ------------------------------------------------------- continue_with race


def test_two_racing_continue_with_create_one_next_job(conn: Conn, pool: Any) -> None:
    a, b = pool(2)
    for i in range(20):
        chain = start(conn, "step")
        conn.commit()
        outside = i % 2 == 1
        if outside:
            worker = None  # workerless continuation of a pending job
            job_id = chain
        else:
            worker = "w1"
            job_id = claim_one(conn, "w1", "step")["id"]
            conn.commit()

        def cont(c: Conn, job_id: uuid.UUID = job_id, worker: str | None = worker) -> Any:
            return one(
                c,
                "SELECT * FROM queuert.continue_with(job_id => %s, worker_id => %s,"
                " type_name => 'step-2', input => %s)",
                (job_id, worker, json.dumps({"from": threading.get_ident()})),
            )

        barrier = threading.Barrier(2)
        r1, r2 = run_parallel(lambda: in_tx(a, barrier, cont), lambda: in_tx(b, barrier, cont))
        assert not isinstance(r1, Exception), r1
        assert not isinstance(r2, Exception), r2
        assert r1["id"] == r2["id"]
        assert sorted([r1["deduplicated"], r2["deduplicated"]]) == [False, True]
        rows = chain_rows(conn, chain)
        conn.commit()
        assert [(r["chain_index"], r["status"]) for r in rows] == [
            (0, "completed"),
            (1, "pending"),
        ]
        assert rows[0]["continued_to"] == r1["id"] == rows[1]["id"]
        assert rows[0]["completed_by"] == worker


# ------------------------------------------------ stale worker after reap


def _reaped_and_reclaimed(conn: Conn) -> tuple[uuid.UUID, int]:
    """A job claimed by w1, reaped after its lease expired and reclaimed by w2."""
    chain = start(conn, "leased")
    conn.commit()
    first = claim_one(conn, "w1", "leased", lease="1 millisecond")
    conn.commit()
    time.sleep(0.01)
    reaped = conn.execute("SELECT * FROM queuert.reap()").fetchall()
    conn.commit()
    assert [(r["job_id"], r["previous_worker"], r["status"]) for r in reaped] == [
        (chain, "w1", "pending")
    ]
    second = claim_one(conn, "w2", "leased")
    conn.commit()
    assert second["id"] == chain and second["attempt"] == 2
    return chain, first["attempt"]


STALE_CALLS = {
    "complete": "SELECT * FROM queuert.complete(job_id => %(j)s, worker_id => %(w)s,"
    " output => '{\"stale\": true}', attempt => %(a)s)",
    "continue_with": "SELECT * FROM queuert.continue_with(job_id => %(j)s, worker_id => %(w)s,"
    " type_name => 'next', attempt => %(a)s)",
    "fail": "SELECT * FROM queuert.fail(job_id => %(j)s, worker_id => %(w)s,"
    " error => 'stale', attempt => %(a)s)",
}


@pytest.mark.parametrize("call", sorted(STALE_CALLS))
def test_stale_worker_after_reap_and_reclaim_gets_qu004(conn: Conn, call: str) -> None:
    job_id, old_attempt = _reaped_and_reclaimed(conn)
    before = chain_rows(conn, job_id)
    conn.commit()
    # The old worker, with and without its (stale) attempt as fencing token;
    # and the new worker itself presenting the stale attempt.
    for worker, attempt in (("w1", None), ("w1", old_attempt), ("w2", old_attempt)):
        with pytest.raises(psycopg.Error) as info:
            conn.execute(STALE_CALLS[call], {"j": job_id, "w": worker, "a": attempt})
        assert info.value.sqlstate == "QU004", (worker, attempt, info.value)
        conn.rollback()
        assert chain_rows(conn, job_id) == before
        conn.commit()
    assert conn.execute("SELECT count(*) AS n FROM queuert.job").fetchone() == {"n": 1}
    conn.commit()
    # The rightful owner still can.
    conn.execute(STALE_CALLS[call], {"j": job_id, "w": "w2", "a": 2})
    conn.commit()


# ---------------------------------------------------- reap vs completion


def test_reap_racing_an_open_completion_never_reopens_it(conn: Conn, pool: Any) -> None:
    """The completion holds its row when reap runs; it then commits."""
    a, b = pool(2)
    jobs = []
    for _ in range(40):
        job_id = start(conn, "r1")
        conn.commit()
        claim_one(conn, "w1", "r1", lease="1 millisecond")
        conn.commit()
        time.sleep(0.002)  # the lease has expired, nobody reaped it yet
        barrier = threading.Barrier(2)

        def finish(c: Conn, job_id: uuid.UUID = job_id) -> Any:
            one(c, "SELECT * FROM queuert.complete(job_id => %s, worker_id => 'w1')", (job_id,))
            barrier.wait()
            time.sleep(random.random() * 0.003)
            c.commit()

        def reap(c: Conn) -> Any:
            barrier.wait()
            time.sleep(random.random() * 0.003)
            rows = c.execute("SELECT * FROM queuert.reap()").fetchall()
            c.commit()
            return rows

        done, reaped = run_parallel(lambda: finish(a), lambda: reap(b))
        assert not isinstance(done, Exception), done
        assert not isinstance(reaped, Exception), reaped
        assert [r["job_id"] for r in reaped] == []
        jobs.append(job_id)
    rows = conn.execute(
        "SELECT status, completed_by, leased_by, count(*) AS n FROM queuert.job"
        " WHERE id = ANY(%s) GROUP BY 1, 2, 3",
        (jobs,),
    ).fetchall()
    assert rows == [{"status": "completed", "completed_by": "w1", "leased_by": None, "n": 40}]


def test_reap_and_completion_racing_from_the_start(conn: Conn, pool: Any) -> None:
    """Whoever wins, exactly one of them takes effect and a completion sticks."""
    a, b = pool(2)
    wins = {"complete": 0, "reap": 0}
    for i in range(40):
        # One type per round: a job the reaper won stays pending, unclaimed.
        job_id = start(conn, f"r2-{i}")
        conn.commit()
        claim_one(conn, "w1", f"r2-{i}", lease="1 millisecond")
        conn.commit()
        time.sleep(0.002)
        barrier = threading.Barrier(2)

        def finish(c: Conn, job_id: uuid.UUID = job_id) -> Any:
            return one(
                c, "SELECT * FROM queuert.complete(job_id => %s, worker_id => 'w1')", (job_id,)
            )

        done, reaped = run_parallel(
            lambda: in_tx(a, barrier, finish),
            lambda: in_tx(b, barrier, lambda c: c.execute("SELECT * FROM queuert.reap()").fetchall()),
        )
        assert not isinstance(reaped, Exception), reaped
        row = job_row(conn, job_id)
        conn.commit()
        assert row is not None
        if isinstance(done, Exception):
            assert sqlstate(done) == "QU003", done
            assert [r["job_id"] for r in reaped] == [job_id]
            assert row["status"] == "pending" and row["leased_by"] is None
            wins["reap"] += 1
        else:
            assert [r["job_id"] for r in reaped] == []
            assert row["status"] == "completed"
            wins["complete"] += 1
        # The job never goes back once completed.
        conn.execute("SELECT * FROM queuert.reap()")
        conn.commit()
        assert job_row(conn, job_id)["status"] == row["status"]  # type: ignore[index]
        conn.commit()
    assert wins["complete"] + wins["reap"] == 40


# ---------------------------------------------------------------- dedup


def _dedup_start(c: Conn, key: str) -> dict[str, Any]:
    return one(
        c,
        "SELECT * FROM queuert.start_chain(type_name => 'dd', dedup_key => %s)",
        (key,),
    )


def _dedup_start_batch(c: Conn, key: str) -> dict[str, Any]:
    """The same start through start_chains, behind an unrelated item."""
    items = [{"type_name": "other"}, {"type_name": "dd", "dedup_key": key}]
    rows = c.execute("SELECT * FROM queuert.start_chains(%s)", (json.dumps(items),)).fetchall()
    return rows[1]


def test_dedup_race_read_committed_creates_one_chain(conn: Conn, pool: Any) -> None:
    conns = pool(8)
    for round_ in range(5):
        key = f"k{round_}"
        barrier = threading.Barrier(8)
        # Half the racers use start_chain, half start_chains.
        results = run_parallel(
            *[
                lambda c=c, i=i: in_tx(
                    c, barrier,
                    lambda cc: (_dedup_start if i % 2 else _dedup_start_batch)(cc, key),
                )
                for i, c in enumerate(conns)
            ]
        )
        for r in results:
            assert not isinstance(r, Exception), r
        assert len({r["id"] for r in results}) == 1
        assert sorted(r["deduplicated"] for r in results) == [False] + [True] * 7
        n = one(
            conn,
            "SELECT count(*) AS n FROM queuert.job WHERE dedup_key = %s",
            (key,),
        )["n"]
        conn.commit()
        assert n == 1


def test_dedup_race_repeatable_read_loser_gets_serialization_failure(
    conn: Conn, pool: Any
) -> None:
    conns = pool(8)
    for c in conns:
        c.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    for round_ in range(4):
        key = f"rr{round_}"
        if round_ % 2:
            # The key's guard row exists already and its chain is cancelled
            # (which frees the key): the race then goes through the update path.
            old = _dedup_start(conn, key)["id"]
            conn.execute("SELECT * FROM queuert.cancel_chains(%s)", ([old],))
            conn.commit()
        barrier = threading.Barrier(8)

        def attempt(c: Conn) -> Any:
            # Take the snapshot before anyone starts: no winner is visible.
            c.execute("SELECT 1")
            return in_tx(c, barrier, lambda cc: _dedup_start(cc, key))

        results = run_parallel(*[lambda c=c: attempt(c) for c in conns])
        winners = [r for r in results if not isinstance(r, Exception)]
        losers = [r for r in results if isinstance(r, Exception)]
        assert len(winners) == 1, results
        assert winners[0]["deduplicated"] is False
        assert [sqlstate(e) for e in losers] == ["40001"] * 7, losers
        # A retry, as the client does, resolves to the winner's chain.
        for c in conns[:2]:
            again = _dedup_start(c, key)
            c.commit()
            assert (again["id"], again["deduplicated"]) == (winners[0]["id"], True)
        n = one(
            conn,
            "SELECT count(*) AS n FROM queuert.job WHERE dedup_key = %s AND status = 'pending'",
            (key,),
        )["n"]
        conn.commit()
        assert n == 1


# ------------------------------------------ cancel/delete vs complete/continue


def _retrying(c: Conn, barrier: threading.Barrier, body: Callable[[Conn], Any]) -> Any:
    """in_tx, retried on deadlock (40P01) as the Python client does."""
    try:
        return in_tx(c, barrier, body)
    except psycopg.Error as exc:
        if exc.sqlstate != "40P01":
            raise
    for _ in range(5):
        try:
            result = body(c)
            c.commit()
            return result
        except psycopg.Error as exc:
            c.rollback()
            if exc.sqlstate != "40P01":
                raise
    raise AssertionError("deadlock retried 5 times")


def _assert_chain_consistent(conn: Conn, chain: uuid.UUID) -> list[dict[str, Any]]:
    rows = chain_rows(conn, chain)
    edges = conn.execute(
        "SELECT count(*) AS n FROM queuert.job_blocker b JOIN queuert.job j ON j.id = b.job_id"
        " WHERE j.chain_id = %s",
        (chain,),
    ).fetchone()
    dangling = conn.execute(
        "SELECT count(*) AS n FROM queuert.job_blocker b"
        " WHERE NOT EXISTS (SELECT 1 FROM queuert.job j WHERE j.id = b.job_id)"
    ).fetchone()
    conn.commit()
    assert dangling == {"n": 0}
    if not rows:
        assert edges == {"n": 0}
        return rows
    assert [r["chain_index"] for r in rows] == list(range(len(rows)))
    for prev, nxt in zip(rows, rows[1:]):
        assert prev["status"] == "completed" and prev["continued_to"] == nxt["id"], rows
    assert rows[-1]["continued_to"] is None
    statuses = {r["status"] for r in rows}
    if "cancelled" in statuses:
        assert not statuses & {"pending", "running", "blocked"}, rows
    for r in rows:
        assert (r["status"] == "running") == (r["leased_by"] is not None), r
    return rows


@pytest.mark.parametrize("admin", ["cancel", "delete"])
@pytest.mark.parametrize("action", ["complete", "continue_with"])
def test_cancel_or_delete_racing_worker_never_corrupts(
    conn: Conn, pool: Any, admin: str, action: str
) -> None:
    a, b = pool(2)
    outcomes: dict[str, int] = {}
    for _ in range(20):
        chain = start(conn, "victim")
        conn.commit()
        job_id = claim_one(conn, "w1", "victim")["id"]
        conn.commit()

        def work(c: Conn, job_id: uuid.UUID = job_id) -> Any:
            if action == "complete":
                return one(c, "SELECT * FROM queuert.complete(job_id => %s, worker_id => 'w1')",
                           (job_id,))
            return one(
                c,
                "SELECT * FROM queuert.continue_with(job_id => %s, worker_id => 'w1',"
                " type_name => 'victim-2')",
                (job_id,),
            )

        def adm(c: Conn, chain: uuid.UUID = chain) -> Any:
            fn = "cancel_chains" if admin == "cancel" else "delete_chains"
            return c.execute(f"SELECT * FROM queuert.{fn}(%s)", ([chain],)).fetchall()

        barrier = threading.Barrier(2)
        w, d = run_parallel(lambda: _retrying(a, barrier, work), lambda: _retrying(b, barrier, adm))
        assert not isinstance(d, Exception), d
        if isinstance(w, Exception):
            # The admin won: the worker lost its job.
            assert sqlstate(w) in ("QU003", "QU001"), w
        rows = _assert_chain_consistent(conn, chain)
        if admin == "delete":
            assert rows == []
            key = "deleted"
        else:
            key = "+".join(r["status"] for r in rows)
            if isinstance(w, Exception):
                assert key == "cancelled"
            elif action == "complete":
                # A completed chain has nothing left to cancel.
                assert key == "completed" and d == []
            else:
                assert key == "completed+cancelled" and d == [{"chain_id": chain}]
        outcomes[key] = outcomes.get(key, 0) + 1
    assert sum(outcomes.values()) == 20


def test_cancel_racing_completion_of_a_blocker_chain(conn: Conn, pool: Any) -> None:
    """Cancel with cascade of a parent while its child chain completes."""
    a, b = pool(2)
    # Cascade locks blocker chains before their dependents, the order a
    # completion takes; a deadlock would still be retried, never corrupt.
    for _ in range(8):
        child = start(conn, "child")
        conn.commit()
        parent = start(conn, "parent", blockers=[child])
        conn.commit()
        child_job = claim_one(conn, "wc", "child")["id"]
        conn.commit()
        barrier = threading.Barrier(2)
        done, cancelled = run_parallel(
            lambda: _retrying(a, barrier, _complete_side_for(child_job, "wc")),
            lambda: _retrying(
                b, barrier,
                lambda c: c.execute(
                    "SELECT * FROM queuert.cancel_chains(%s, cascade => true)", ([parent],)
                ).fetchall(),
            ),
        )
        assert not isinstance(cancelled, Exception), cancelled
        child_rows = _assert_chain_consistent(conn, child)
        parent_rows = _assert_chain_consistent(conn, parent)
        assert [r["status"] for r in parent_rows] == ["cancelled"]
        if isinstance(done, Exception):
            assert sqlstate(done) == "QU003", done
            assert [r["status"] for r in child_rows] == ["cancelled"]
        else:
            assert [r["status"] for r in child_rows] == ["completed"]
            # The parent's counter followed the completion even though cancelled.
            assert parent_rows[0]["open_blockers"] == 0


def _complete_side_for(job_id: uuid.UUID, worker: str) -> Callable[[Conn], Any]:
    def body(c: Conn) -> Any:
        return one(
            c, "SELECT * FROM queuert.complete(job_id => %s, worker_id => %s)", (job_id, worker)
        )

    return body
