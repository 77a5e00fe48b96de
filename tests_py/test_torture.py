"""The torture run (tests_py/torture/run.py) in its shortened form, and a
proof that each of its final checks catches the corruption it names, and
that no other check reports it.

The short run: 1,500 chains, 4 worker processes (2 staged, 2 atomic),
SIGKILLs every ~2.5 s with replacements, pg_terminate_backend of worker
connections and one PostgreSQL crash-restart, on a temporary cluster the
run starts for itself (never the shared server).

The check tests build an honest little world first (every kind of chain,
both modes, run the way the handlers in app.py run them), see that no check
reports it, then plant one corruption on top and see exactly its check
report it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from torture_world import TORTURE, build_honest_world, load_torture

Conn = psycopg.Connection[tuple[Any, ...]]


run = load_torture("run")
checks = load_torture("checks")


@pytest.mark.timeout(290)
def test_short_torture_run_loses_nothing() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(TORTURE / "run.py"), "--short", "--timeout", "200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=230)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the run stops its workers and its cluster on SIGTERM
        stdout, stderr = proc.communicate(timeout=50)
        pytest.fail(f"the short torture run did not finish in 230 s\n{stdout}\n{stderr[-6000:]}")
    summary = [line for line in stdout.splitlines() if line.startswith("torture ")]
    assert proc.returncode == 0, f"{stdout}\n{stderr[-6000:]}"
    assert len(summary) == 1 and summary[0].startswith("torture OK:"), stdout
    figures = dict(part.split("=", 1) for part in summary[0].split(": ", 1)[1].split())
    assert figures["lost"] == "0" and figures["duplicates"] == "0" and figures["violations"] == "0"
    assert int(figures["chains"]) == 1500
    assert int(figures["kills"]) >= 3
    assert int(figures["conn_terminations"]) >= 1
    assert figures["restarts"] == "1"
    assert int(figures["failed_as_expected"]) > 0  # capped chains that always fail
    assert int(figures["retries"]) > 0
    # its own cluster is gone with it
    kept = [line for line in stderr.splitlines() if "own PostgreSQL cluster in " in line]
    assert len(kept) == 1
    assert not Path(kept[0].split(" cluster in ", 1)[1].split(",")[0]).exists()


def test_worker_exits_are_told_apart_from_kills(tmp_path: Path) -> None:
    """A worker that exits on its own is a violation; one the chaos loop
    killed is not."""
    workers = run.Workers("unused", tmp_path, {"staged": 1, "atomic": 1}, 0.0)
    died = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.kill()
    for proc in (died, killed):
        proc.wait()
        workers.procs.append(run.WorkerProc("staged", proc, tmp_path / "w.log"))
    found = workers.check_crashed({killed.pid})
    assert len(found) == 1 and f"pid {died.pid}" in found[0] and "exited with 3" in found[0]


# -- the checks themselves -------------------------------------------------------


class World:
    """Chains run the way app.py's handlers run them: atomic jobs write
    torture_effect in the job's transaction, staged jobs record their run in
    torture_attempt before completing, final outputs name attempt and worker."""

    def __init__(self, dsn: str, c: Conn) -> None:
        self.dsn = dsn
        self.c = c

    def chain(self, type_name: str, kind: str, *, n: int | None = None, always_fail: bool = False,
              blockers: list[uuid.UUID] | None = None, register: bool = True) -> uuid.UUID:
        row = self.c.execute(
            "SELECT chain_id FROM queuert.start_chain(type_name => %s, input => %s::jsonb, blockers => %s)",
            (type_name, json.dumps({"always_fail": always_fail}), blockers),
        ).fetchone()
        assert row is not None
        chain_id: uuid.UUID = row[0]
        if register:
            self.c.execute(
                "INSERT INTO torture_chain (chain_id, kind, mode, n, always_fail) VALUES (%s, %s, %s, %s, %s)",
                (chain_id, kind, "atomic" if type_name.startswith("a.") else "staged", n, always_fail),
            )
        return chain_id

    def claim(self, worker: str, type_name: str, lease: str = "1 hour") -> tuple[uuid.UUID, int]:
        row = self.c.execute(
            "SELECT id, attempt FROM queuert.claim(%s, ARRAY[%s], lease => %s::interval)",
            (worker, type_name, lease),
        ).fetchone()
        assert row is not None, f"nothing of {type_name} to claim"
        return row[0], row[1]

    def run(self, worker: str, type_name: str, *, then: str | None = None, effects: int = 1,
            record: bool = True, output: dict[str, Any] | None = None) -> uuid.UUID:
        """Claim one job of ``type_name`` and finish it: continue to ``then``
        or complete it with the honest output (or ``output``)."""
        with self.c.transaction():
            job_id, attempt = self.claim(worker, type_name)
            if type_name.startswith("a."):
                for _ in range(effects):
                    self.effect(job_id, attempt, worker)
            elif record:
                self.c.execute("INSERT INTO torture_attempt (job_id, attempt, worker) VALUES (%s, %s, %s)",
                               (job_id, attempt, worker))
            if then is not None:
                self.c.execute("SELECT queuert.continue_with(%s, %s, %s, attempt => %s)",
                               (job_id, worker, then, attempt))
            else:
                result = {"attempt": attempt, "worker": worker} if output is None else output
                self.c.execute("SELECT queuert.complete(%s, %s, %s::jsonb, %s)",
                               (job_id, worker, json.dumps(result), attempt))
        return job_id

    def effect(self, job_id: uuid.UUID, attempt: int, worker: str) -> None:
        self.c.execute("INSERT INTO torture_effect (job_id, attempt, worker) VALUES (%s, %s, %s)",
                       (job_id, attempt, worker))

    def fail(self, worker: str, type_name: str, error: str) -> tuple[uuid.UUID, int]:
        job_id, attempt = self.claim(worker, type_name)
        self.c.execute("SELECT queuert.fail(%s, %s, %s, retry_at => now(), attempt => %s)",
                       (job_id, worker, error, attempt))
        return job_id, attempt


@pytest.fixture
def world(dsn: str) -> Iterator[World]:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(checks.SIDE_TABLES)
        for p in ("a", "s"):
            c.execute("SELECT queuert.set_job_type(%s, max_attempts => 3)", (f"{p}.capped",))
        w = World(dsn, c)
        build_honest_world(w)
        yield w


def _check(w: World) -> tuple[dict[str, int], set[str]]:
    figures, violations = checks.check(w.dsn)
    return figures, checks.reported(violations)


# Each plant adds one corruption to the honest world; the key is the one
# check that must report it.


def _missing_chain(w: World) -> None:
    w.c.execute("INSERT INTO torture_chain (chain_id, kind, mode) VALUES (gen_random_uuid(), 'single', 'atomic')")


def _stray_chain(w: World) -> None:
    w.chain("a.single", "single", register=False)
    w.run("w1", "a.single")


def _unfinished(w: World) -> None:
    w.chain("a.single", "single")


def _failed_without_cause(w: World) -> None:
    w.c.execute("SELECT queuert.set_job_type('s.single', max_attempts => 1)")
    w.chain("s.single", "single")
    w.fail("w1", "s.single", "Flaky: random failure")


def _always_failing_chain_completed(w: World) -> None:
    w.chain("s.capped", "capped", always_fail=True)
    w.run("w1", "s.capped")


def _chain_cut_short(w: World) -> None:
    w.chain("a.step1", "step1")
    w.run("w1", "a.step1")  # completes at step 1 instead of continuing


def _gap_in_chain_index(w: World) -> None:
    chain = w.chain("s.step1", "step1")
    w.run("w1", "s.step1", then="s.step2")
    w.run("w1", "s.step2")
    # positions 0 and 2: three jobs by the tail's position, two rows
    w.c.execute("UPDATE queuert.job SET chain_index = 2 WHERE chain_id = %s AND chain_index = 1", (chain,))


def _two_tails(w: World) -> None:
    chain = w.chain("s.loop", "loop", n=1)
    first = w.run("w1", "s.loop", then="s.loop")
    w.run("w1", "s.loop")
    w.c.execute(
        "UPDATE queuert.job SET continued_to = NULL, output = jsonb_build_object('attempt', attempt, "
        "'worker', completed_by) WHERE id = %s AND chain_id = %s",
        (first, chain),
    )


def _duplicate_effect(w: World) -> None:
    w.chain("a.single", "single")
    w.run("w1", "a.single", effects=2)


def _missing_effect(w: World) -> None:
    w.chain("a.single", "single")
    w.run("w1", "a.single", effects=0)


def _rolled_back_effect_committed(w: World) -> None:
    w.chain("a.capped", "capped", always_fail=True)
    for attempt in range(1, 4):
        job_id, _ = w.fail("w1", "a.capped", f"Flaky: capped job always fails (attempt {attempt})")
    # the failed attempt 2's write survived its rollback
    w.effect(job_id, 2, "w1")


def _effect_of_another_attempt(w: World) -> None:
    w.chain("a.single", "single")
    job_id = w.run("w1", "a.single", effects=0)
    w.effect(job_id, 1, "w9")  # a run of another worker's, not the completing one


def _staged_completion_from_nowhere(w: World) -> None:
    w.chain("s.single", "single")
    w.run("w1", "s.single", record=False)


def _stale_output(w: World) -> None:
    w.chain("a.single", "single")
    w.run("w1", "a.single", output={"attempt": 1, "worker": "w9"})


def _running_with_expired_lease(w: World) -> None:
    w.chain("a.single", "single")
    job_id, _ = w.claim("w1", "a.single")
    # reap never took it back: its lease ran out an hour ago
    w.c.execute("UPDATE queuert.job SET leased_until = now() - interval '1 hour' WHERE id = %s", (job_id,))


def _running_with_live_lease(w: World) -> None:
    w.chain("s.single", "single")
    w.claim("w1", "s.single", lease="1 hour")


def _stranded_dependent(w: World) -> None:
    blocker = w.chain("a.single", "single")
    w.chain("s.join", "join", n=1, blockers=[blocker])
    w.run("w1", "a.single")
    # blocked again (count 0, which agrees with its blockers): nobody will release it
    w.c.execute("UPDATE queuert.job SET status = 'blocked' WHERE type_name = 's.join' AND status = 'pending'")


def _open_blockers_miscounted(w: World) -> None:
    blocker = w.chain("a.single", "single")
    w.chain("s.join", "join", n=1, blockers=[blocker])
    w.run("w1", "a.single")
    w.c.execute("UPDATE queuert.job SET open_blockers = 1 WHERE type_name = 's.join' AND status = 'pending'")


def _handler_reported(w: World) -> None:
    w.chain("s.sched", "sched")
    job_id = w.run("w1", "s.sched")
    w.c.execute("INSERT INTO torture_violation (job_id, what) VALUES (%s, 'scheduled job ran 1.000s early')",
                (job_id,))


PLANTS: list[tuple[str, Callable[[World], None], dict[str, int]]] = [
    (checks.MISSING_CHAIN, _missing_chain, {"lost": 1}),
    (checks.STRAY_CHAIN, _stray_chain, {}),
    (checks.UNFINISHED, _unfinished, {"lost": 1}),
    (checks.WRONG_FAILURE, _failed_without_cause, {}),
    (checks.WRONG_FAILURE, _always_failing_chain_completed, {}),
    (checks.WRONG_SHAPE, _chain_cut_short, {}),
    (checks.BROKEN_INDEX, _gap_in_chain_index, {}),
    (checks.BROKEN_INDEX, _two_tails, {}),
    (checks.DUPLICATE_EFFECT, _duplicate_effect, {"duplicates": 1}),
    (checks.MISSING_EFFECT, _missing_effect, {"lost": 1}),
    (checks.PHANTOM_EFFECT, _rolled_back_effect_committed, {}),
    (checks.FOREIGN_EFFECT, _effect_of_another_attempt, {}),
    (checks.STAGED_WITHOUT_RUN, _staged_completion_from_nowhere, {"lost": 1}),
    (checks.STALE_OUTPUT, _stale_output, {}),
    (checks.RUNNING_EXPIRED, _running_with_expired_lease, {"lost": 1}),
    (checks.RUNNING_LIVE, _running_with_live_lease, {"lost": 1}),
    (checks.STRANDED, _stranded_dependent, {"lost": 1}),
    (checks.OPEN_BLOCKERS, _open_blockers_miscounted, {"lost": 1}),
    (checks.HANDLER_REPORTED, _handler_reported, {}),
]


def test_every_check_has_a_planted_corruption() -> None:
    assert {name for name, _, _ in PLANTS} == set(checks.CHECKS)
    assert len(checks.CHECKS) == len(set(checks.CHECKS)) == 17


def test_an_honest_world_passes_every_check(world: World) -> None:
    figures, found = _check(world)
    assert found == set()
    assert figures["lost"] == 0 and figures["duplicates"] == 0
    assert figures["chains"] == 7 and figures["failed_as_expected"] == 1
    assert figures["atomic_jobs"] == 5 and figures["staged_jobs"] == 5


@pytest.mark.parametrize(("name", "plant", "tally"), PLANTS, ids=[p.__name__.strip("_") for _, p, _ in PLANTS])
def test_each_check_catches_its_corruption_and_no_other_does(
    world: World, name: str, plant: Callable[[World], None], tally: dict[str, int]
) -> None:
    plant(world)
    figures, found = _check(world)
    assert found == {name}
    assert {k: figures[k] for k in ("lost", "duplicates")} == {"lost": 0, "duplicates": 0, **tally}


# -- the handlers' own checks (app.py), run by a real torture worker ----------
#
# HANDLER_REPORTED above is proven with a planted violation row; these plant
# the engine faults the handlers look for and let app.py's handlers, in a
# worker process as the torture run starts them, find and report them.


def _fan_in_short_of_a_blocker(w: World) -> uuid.UUID:
    """A fan-in on two chains whose engine lost one blocker edge (the count
    kept consistent with the edges left): it becomes due after one blocker."""
    blockers = [w.chain("s.single", "single"), w.chain("s.single", "single")]
    row = w.c.execute(
        "SELECT chain_id FROM queuert.start_chain(type_name => 's.join', input => '{\"n\": 2}', blockers => %s)",
        (blockers,),
    ).fetchone()
    assert row is not None
    join: uuid.UUID = row[0]
    w.c.execute("INSERT INTO torture_chain (chain_id, kind, mode, n) VALUES (%s, 'join', 'staged', 2)", (join,))
    w.c.execute("DELETE FROM queuert.job_blocker WHERE job_id = %s AND blocker_chain_id = %s", (join, blockers[1]))
    w.c.execute("UPDATE queuert.job SET open_blockers = open_blockers - 1 WHERE id = %s", (join,))
    w.run("w1", "s.single")
    w.run("w1", "s.single")
    return join


def _claimed_before_its_time(w: World) -> uuid.UUID:
    """A claim that hands out a job scheduled an hour ahead (the engine's
    fault planted as a trigger on the claim's UPDATE)."""
    w.c.execute(
        "CREATE FUNCTION plant_early() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "NEW.scheduled_at := now() + interval '1 hour'; RETURN NEW; END $$"
    )
    w.c.execute(
        "CREATE TRIGGER plant_early BEFORE UPDATE OF status ON queuert.job FOR EACH ROW "
        "WHEN (OLD.status = 'pending' AND NEW.status = 'running' AND NEW.type_name = 's.sched') "
        "EXECUTE FUNCTION plant_early()"
    )
    row = w.c.execute(
        "SELECT chain_id FROM queuert.start_chain(type_name => 's.sched', input => '{\"k\": \"sched\"}')"
    ).fetchone()
    assert row is not None
    w.c.execute("INSERT INTO torture_chain (chain_id, kind, mode) VALUES (%s, 'sched', 'staged')", (row[0],))
    return uuid.UUID(str(row[0]))


@pytest.mark.parametrize(("plant", "what"), [
    (_fan_in_short_of_a_blocker, "fan-in ran with 1/2 blockers"),
    (_claimed_before_its_time, "scheduled job ran "),
], ids=["fan_in_short_of_a_blocker", "claimed_before_its_time"])
def test_the_torture_handlers_report_what_they_check(
    world: World, tmp_path: Path, plant: Callable[[World], uuid.UUID], what: str
) -> None:
    chain = plant(world)
    workers = run.Workers(world.dsn, tmp_path, {"staged": 2, "atomic": 2}, 0.0)
    proc = workers.start("staged")
    try:
        deadline = time.monotonic() + 60
        while (status := world.c.execute(
            "SELECT status::text FROM queuert.chain WHERE chain_id = %s", (chain,)
        ).fetchone()) != ("completed",):
            assert proc.proc.poll() is None, proc.log_path.read_text()
            assert time.monotonic() < deadline, f"the planted chain is {status}\n{proc.log_path.read_text()}"
            time.sleep(0.05)
    finally:
        workers.stop_all()
    assert proc.proc.returncode == 0, proc.log_path.read_text()
    reports = world.c.execute("SELECT job_id, what FROM torture_violation").fetchall()
    assert len(reports) == 1 and reports[0][1].startswith(what), reports
    figures, found = _check(world)
    assert found == {checks.HANDLER_REPORTED}
    assert figures["lost"] == 0 and figures["duplicates"] == 0
