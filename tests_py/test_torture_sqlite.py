"""The SQLite torture run (tests_py/torture/sqlite_run.py) in its short
form, and a proof that each of its final checks (sqlite_checks.py, the
SQLite queries of checks.py's invariants) catches the corruption it names,
and that no other check reports it.

The short run: 600 chains, 4 worker processes (2 staged, 2 atomic) on one
WAL file, a SIGKILL every ~2 s with a replacement worker each time. The
check tests build an honest little world first (every kind of chain, both
modes, run the way sqlite_app.py's handlers run them), see that no check
reports it, then plant one corruption on top and see exactly its check
report it, as tests_py/test_torture.py does for PostgreSQL.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from torture_world import TORTURE, build_honest_world, load_torture

import queuert._sqlite as qs


checks = load_torture("checks")
sqlite_checks = load_torture("sqlite_checks")
sqlite_run = load_torture("sqlite_run")


@pytest.mark.timeout(290)
def test_short_sqlite_torture_run_loses_nothing() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(TORTURE / "sqlite_run.py"), "--short", "--timeout", "200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the run stops its workers on SIGTERM
        stdout, stderr = proc.communicate(timeout=40)
        pytest.fail(f"the short SQLite torture run did not finish in 240 s\n{stdout}\n{stderr[-6000:]}")
    summary = [line for line in stdout.splitlines() if line.startswith("torture-sqlite ")]
    assert proc.returncode == 0, f"{stdout}\n{stderr[-6000:]}"
    assert len(summary) == 1 and summary[0].startswith("torture-sqlite OK:"), stdout
    figures = dict(part.split("=", 1) for part in summary[0].split(": ", 1)[1].split())
    assert figures["lost"] == "0" and figures["duplicates"] == "0" and figures["violations"] == "0"
    assert int(figures["chains"]) == 600
    assert int(figures["kills"]) >= 3
    assert int(figures["workers"]) >= 4 + 3, "a replacement per kill"
    assert int(figures["failed_as_expected"]) > 0  # capped chains that always fail
    assert int(figures["retries"]) > 0
    assert int(figures["atomic_jobs"]) > 0 and int(figures["staged_jobs"]) > 0


# -- the checks themselves -------------------------------------------------------


class World:
    """Chains run the way sqlite_app.py's handlers run them: atomic jobs
    write torture_effect in the job's transaction, staged jobs record their
    run in torture_attempt before completing, final outputs name attempt
    and worker."""

    def __init__(self, path: str, c: sqlite3.Connection) -> None:
        self.path = path
        self.c = c

    def chain(self, type_name: str, kind: str, *, n: int | None = None, always_fail: bool = False,
              blockers: list[UUID] | None = None, register: bool = True) -> UUID:
        started = qs.start_chain(self.c, type_name, {"always_fail": always_fail}, blockers=blockers)
        chain_id: UUID = started["chain_id"]
        if register:
            self.c.execute(
                "INSERT INTO torture_chain (chain_id, kind, mode, n, always_fail) VALUES (?, ?, ?, ?, ?)",
                (str(chain_id), kind, "atomic" if type_name.startswith("a.") else "staged", n, always_fail),
            )
        return chain_id

    def claim(self, worker: str, type_name: str, lease_s: float = 3600) -> tuple[UUID, int]:
        from datetime import timedelta

        claimed = qs.claim(self.c, worker, [type_name], lease=timedelta(seconds=lease_s))
        assert claimed, f"nothing of {type_name} to claim"
        return claimed[0]["id"], claimed[0]["attempt"]

    def run(self, worker: str, type_name: str, *, then: str | None = None, effects: int = 1,
            record: bool = True, output: dict[str, Any] | None = None) -> UUID:
        """Claim one job of ``type_name`` and finish it: continue to ``then``
        or complete it with the honest output (or ``output``)."""
        with qs.transaction(self.c):
            job_id, attempt = self.claim(worker, type_name)
            if type_name.startswith("a."):
                for _ in range(effects):
                    self.effect(job_id, attempt, worker)
            elif record:
                self.c.execute("INSERT INTO torture_attempt (job_id, attempt, worker) VALUES (?, ?, ?)",
                               (str(job_id), attempt, worker))
            if then is not None:
                qs.continue_with(self.c, job_id, worker, then, attempt=attempt)
            else:
                result = {"attempt": attempt, "worker": worker} if output is None else output
                qs.complete(self.c, job_id, worker, result, attempt=attempt)
        return job_id

    def effect(self, job_id: UUID, attempt: int, worker: str) -> None:
        self.c.execute("INSERT INTO torture_effect (job_id, attempt, worker) VALUES (?, ?, ?)",
                       (str(job_id), attempt, worker))

    def fail(self, worker: str, type_name: str, error: str) -> tuple[UUID, int]:
        from datetime import datetime, timezone

        job_id, attempt = self.claim(worker, type_name)
        qs.fail(self.c, job_id, worker, error, retry_at=datetime.now(timezone.utc), attempt=attempt)
        return job_id, attempt


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    path = str(tmp_path / "torture.db")
    qs.migrate(path)
    c = qs.connect(path)
    c.executescript(sqlite_checks.SIDE_TABLES)
    for p in ("a", "s"):
        qs.set_job_type(c, f"{p}.capped", max_attempts=3)
    w = World(path, c)
    build_honest_world(w)
    yield w
    c.close()


def _check(w: World) -> tuple[dict[str, int], set[str]]:
    figures, violations = sqlite_checks.check(w.path)
    return figures, checks.reported(violations)


def _missing_chain(w: World) -> None:
    w.c.execute("INSERT INTO torture_chain (chain_id, kind, mode) VALUES (?, 'single', 'atomic')", (str(uuid4()),))


def _stray_chain(w: World) -> None:
    w.chain("a.single", "single", register=False)
    w.run("w1", "a.single")


def _unfinished(w: World) -> None:
    w.chain("a.single", "single")


def _failed_without_cause(w: World) -> None:
    qs.set_job_type(w.c, "s.single", max_attempts=1)
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
    w.c.execute("UPDATE queuert_job SET chain_index = 2 WHERE chain_id = ? AND chain_index = 1", (str(chain),))


def _two_tails(w: World) -> None:
    chain = w.chain("s.loop", "loop", n=1)
    first = w.run("w1", "s.loop", then="s.loop")
    w.run("w1", "s.loop")
    w.c.execute(
        "UPDATE queuert_job SET continued_to = NULL, output = json_object('attempt', attempt, "
        "'worker', completed_by) WHERE id = ? AND chain_id = ?",
        (str(first), str(chain)),
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
    w.effect(job_id, 2, "w1")  # the failed attempt 2's write survived its rollback


def _effect_of_another_attempt(w: World) -> None:
    w.chain("a.single", "single")
    job_id = w.run("w1", "a.single", effects=0)
    w.effect(job_id, 1, "w9")


def _staged_completion_from_nowhere(w: World) -> None:
    w.chain("s.single", "single")
    w.run("w1", "s.single", record=False)


def _stale_output(w: World) -> None:
    w.chain("a.single", "single")
    w.run("w1", "a.single", output={"attempt": 1, "worker": "w9"})


def _running_with_expired_lease(w: World) -> None:
    w.chain("a.single", "single")
    job_id, _ = w.claim("w1", "a.single")
    w.c.execute("UPDATE queuert_job SET leased_until = leased_until - 7200000000 WHERE id = ?", (str(job_id),))


def _running_with_live_lease(w: World) -> None:
    w.chain("s.single", "single")
    w.claim("w1", "s.single")


def _stranded_dependent(w: World) -> None:
    blocker = w.chain("a.single", "single")
    w.chain("s.join", "join", n=1, blockers=[blocker])
    w.run("w1", "a.single")
    w.c.execute("UPDATE queuert_job SET status = 'blocked' WHERE type_name = 's.join' AND status = 'pending'")


def _open_blockers_miscounted(w: World) -> None:
    blocker = w.chain("a.single", "single")
    w.chain("s.join", "join", n=1, blockers=[blocker])
    w.run("w1", "a.single")
    w.c.execute("UPDATE queuert_job SET open_blockers = 1 WHERE type_name = 's.join' AND status = 'pending'")


def _handler_reported(w: World) -> None:
    w.chain("s.sched", "sched")
    job_id = w.run("w1", "s.sched")
    w.c.execute("INSERT INTO torture_violation (job_id, what) VALUES (?, 'scheduled job ran 1.000s early')",
                (str(job_id),))


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


def test_the_torture_fan_in_handler_reports_a_lost_blocker(world: World, tmp_path: Path) -> None:
    """sqlite_app.py's fan-in check, run by a real torture worker: a fan-in
    on two chains whose engine lost one blocker edge (the counts kept
    consistent with the edge left) runs after one blocker; its handler
    reports it, and only HANDLER_REPORTED says so. (The handler's schedule
    check has no planted fault here: the SQLite claim's RETURNING shows no
    trigger's change, so a claim before its time cannot be staged from
    outside the engine; tests_py/test_torture.py plants it on PostgreSQL.)"""
    w = world
    blockers = [w.chain("s.single", "single"), w.chain("s.single", "single")]
    join: UUID = qs.start_chain(w.c, "s.join", {"n": 2}, blockers=blockers)["chain_id"]
    w.c.execute("INSERT INTO torture_chain (chain_id, kind, mode, n) VALUES (?, 'join', 'staged', 2)", (str(join),))
    w.c.execute("DELETE FROM queuert_job_blocker WHERE job_id = ? AND blocker_chain_id = ?",
                (str(join), str(blockers[1])))
    w.c.execute("UPDATE queuert_job SET open_blockers = open_blockers - 1, blocker_count = blocker_count - 1 "
                "WHERE id = ?", (str(join),))
    w.run("w1", "s.single")
    w.run("w1", "s.single")
    workers = sqlite_run.Workers(w.path, tmp_path, {"staged": 2, "atomic": 2}, 0.0)
    workers.start("staged")
    try:
        deadline = time.monotonic() + 60
        while (status := w.c.execute("SELECT status FROM queuert_job WHERE id = ?", (str(join),)).fetchone()) \
                != ("completed",):
            assert workers.alive(), workers.procs[0][2].read_text()
            assert time.monotonic() < deadline, f"the fan-in is {status}\n{workers.procs[0][2].read_text()}"
            time.sleep(0.05)
    finally:
        workers.stop_all()
    assert workers.defects() == []
    side = sqlite3.connect(f"{w.path}.violations")
    try:
        reports = side.execute("SELECT job_id, what FROM torture_violation").fetchall()
    finally:
        side.close()
    assert len(reports) == 1 and reports[0][1].startswith("fan-in ran with 1/2 blockers"), reports
    figures, found = _check(w)
    assert found == {checks.HANDLER_REPORTED}
    assert figures["lost"] == 0 and figures["duplicates"] == 0


def test_worker_defects_are_told_apart_from_kills_and_clean_stops(tmp_path: Path) -> None:
    """The run's own verdict on its workers (sqlite_run.Workers.defects): a
    worker that exited on its own, or whose log holds a traceback or a bare
    sqlite3 error, is a defect; one the chaos loop killed, or one that
    stopped cleanly with a clean log, is not."""
    workers = sqlite_run.Workers(str(tmp_path / "unused.db"), tmp_path, {"staged": 1, "atomic": 1}, 0.0)
    logs = {name: tmp_path / f"{name}.log" for name in ("died", "killed", "clean", "traced", "locked")}
    logs["traced"].write_text("worker w1 stopping\nTraceback (most recent call last):\n  ...\n")
    logs["locked"].write_text("sqlite3.OperationalError: database is locked\n")
    logs["clean"].write_text("worker w1 stopped\n")
    logs["died"].write_text("")
    logs["killed"].write_text("")
    procs = {
        "died": subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]),
        "killed": subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]),
        "clean": subprocess.Popen([sys.executable, "-c", "pass"]),
        "traced": subprocess.Popen([sys.executable, "-c", "pass"]),
        "locked": subprocess.Popen([sys.executable, "-c", "pass"]),
    }
    procs["killed"].kill()
    workers.killed.add(procs["killed"].pid)
    for name, proc in procs.items():
        proc.wait()
        workers.procs.append(("staged", proc, logs[name]))
    found = workers.defects()
    assert len(found) == 3, found
    assert f"pid {procs['died'].pid}" in found[0] and "exited with 3" in found[0]
    assert "'Traceback'" in found[1] and f"pid {procs['traced'].pid}" in found[1]
    assert "'OperationalError'" in found[2] and f"pid {procs['locked'].pid}" in found[2]
