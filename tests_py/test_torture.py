"""The torture run (tests_py/torture/run.py) in its shortened form, and a
proof that its final checks catch what they claim to catch.

The short run: ~1,500 chains, 4 worker processes (2 staged, 2 atomic),
SIGKILLs every ~2.5 s with replacements, pg_terminate_backend of worker
connections. It restarts PostgreSQL only with QUEUERT_TORTURE_RESTART=1,
because other tests share the server (``make torture`` always restarts it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest

TORTURE = Path(__file__).resolve().parent / "torture"


def _load_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("queuert_torture_run", TORTURE / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


torture = _load_run()


@pytest.mark.timeout(290)
def test_short_torture_run_loses_nothing(base_dsn: str) -> None:
    env = dict(os.environ, QUEUERT_TEST_DSN=base_dsn)
    proc = subprocess.run(
        [sys.executable, str(TORTURE / "run.py"), "--short", "--timeout", "200"],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    summary = [line for line in proc.stdout.splitlines() if line.startswith("torture ")]
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-6000:]}"
    assert len(summary) == 1 and summary[0].startswith("torture OK:"), proc.stdout
    figures = dict(part.split("=", 1) for part in summary[0].split(": ", 1)[1].split())
    assert figures["lost"] == "0" and figures["duplicates"] == "0" and figures["violations"] == "0"
    assert int(figures["chains"]) == 1500
    assert int(figures["kills"]) >= 3
    assert int(figures["conn_terminations"]) >= 1
    assert int(figures["failed_as_expected"]) > 0  # capped chains that always fail
    assert int(figures["retries"]) > 0
    if os.environ.get("QUEUERT_TORTURE_RESTART") == "1":
        assert figures["restarts"] == "1"


# -- the checks themselves -------------------------------------------------------


@pytest.fixture
def tdb(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(torture.SIDE_TABLES)
        c.execute("SELECT queuert.set_job_type('a.capped', max_attempts => 3)")
    return dsn


def _chain(c: psycopg.Connection[Any], type_name: str, kind: str, mode: str, **kw: Any) -> uuid.UUID:
    row = c.execute(
        "SELECT chain_id FROM queuert.start_chain(type_name => %s, input => %s::jsonb)",
        (type_name, json.dumps(kw.get("input"))),
    ).fetchone()
    assert row is not None
    cid: uuid.UUID = row[0]
    c.execute(
        "INSERT INTO torture_chain (chain_id, kind, mode, n, always_fail) VALUES (%s, %s, %s, %s, %s)",
        (cid, kind, mode, kw.get("n"), kw.get("always_fail", False)),
    )
    return cid


def _run_atomic(c: psycopg.Connection[Any], worker: str, effects: int = 1) -> uuid.UUID:
    """Claim and complete one a.* job as an honest atomic handler would."""
    with c.transaction():
        row = c.execute("SELECT id, attempt FROM queuert.claim(%s, max_jobs => 1)", (worker,)).fetchone()
        assert row is not None
        job_id, attempt = row
        for _ in range(effects):
            c.execute("INSERT INTO torture_effect VALUES (%s, %s, %s)", (job_id, attempt, worker))
        c.execute(
            "SELECT queuert.complete(%s, %s, %s::jsonb, %s)",
            (job_id, worker, json.dumps({"attempt": attempt, "worker": worker}), attempt),
        )
    return job_id


def _violations(dsn: str) -> tuple[dict[str, int], list[str]]:
    return torture.check(dsn)  # type: ignore[no-any-return]


def test_check_passes_an_honest_run(tdb: str) -> None:
    with psycopg.connect(tdb, autocommit=True) as c:
        _chain(c, "a.single", "single", "atomic")
        _run_atomic(c, "w1")
    figures, violations = _violations(tdb)
    assert violations == []
    assert figures["lost"] == 0 and figures["duplicates"] == 0 and figures["chains"] == 1


def test_check_reports_an_unfinished_chain_as_lost(tdb: str) -> None:
    with psycopg.connect(tdb, autocommit=True) as c:
        _chain(c, "a.single", "single", "atomic")
    figures, violations = _violations(tdb)
    assert figures["lost"] == 1
    assert any(v.startswith("chains not finished (lost)") for v in violations)


def test_check_reports_a_duplicate_atomic_effect(tdb: str) -> None:
    with psycopg.connect(tdb, autocommit=True) as c:
        _chain(c, "a.single", "single", "atomic")
        _run_atomic(c, "w1", effects=2)
    figures, violations = _violations(tdb)
    assert figures["duplicates"] == 1
    assert any(v.startswith("atomic jobs with more than one committed effect") for v in violations)


def test_check_reports_a_staged_completion_without_a_recorded_run(tdb: str) -> None:
    with psycopg.connect(tdb, autocommit=True) as c:
        _chain(c, "s.single", "single", "staged")
        job_id, attempt = c.execute("SELECT id, attempt FROM queuert.claim('w1')").fetchone()  # type: ignore[misc]
        c.execute(
            "SELECT queuert.complete(%s, 'w1', %s::jsonb, %s)",
            (job_id, json.dumps({"attempt": attempt, "worker": "w1"}), attempt),
        )
    figures, violations = _violations(tdb)
    assert figures["lost"] == 1
    assert any(v.startswith("staged jobs completed without a recorded run") for v in violations)


def test_check_reports_a_running_job_and_a_wrong_failure(tdb: str) -> None:
    with psycopg.connect(tdb, autocommit=True) as c:
        _chain(c, "a.single", "single", "atomic")
        c.execute("SELECT queuert.claim('w1', lease => '1 millisecond')")
        capped = _chain(c, "a.capped", "capped", "atomic", input={"always_fail": True}, always_fail=True)
        # fails once only: max_attempts (3) says it must not be failed yet
        c.execute("SELECT queuert.claim('w2', type_names => ARRAY['a.capped'])")
        c.execute("SELECT queuert.fail(%s, 'w2', 'Flaky: boom')", (capped,))
    _, violations = _violations(tdb)
    assert any(v.startswith("jobs running without a live lease") for v in violations)
    assert any(v.startswith("jobs still running after every worker stopped") for v in violations)
    assert any(v.startswith("chains failed where max_attempts does not say so") for v in violations)


def test_check_reports_a_stale_output_and_a_stranded_dependent(tdb: str) -> None:
    with psycopg.connect(tdb, autocommit=True) as c:
        blocker = _chain(c, "a.single", "single", "atomic")
        job_id = _run_atomic(c, "w1")
        # output claiming another worker than completed_by: a fencing breach
        c.execute("UPDATE queuert.job SET output = '{\"attempt\": 1, \"worker\": \"w9\"}' WHERE id = %s", (job_id,))
        # a dependent stranded in blocked although its blocker completed
        c.execute(
            "SELECT queuert.start_chain(type_name => 'a.join', blockers => ARRAY[%s]::uuid[])", (blocker,)
        )
        c.execute("UPDATE queuert.job SET status = 'blocked', open_blockers = 1 WHERE type_name = 'a.join'")
    _, violations = _violations(tdb)
    assert any(v.startswith("final outputs written by another attempt") for v in violations)
    assert any(v.startswith("jobs blocked although every blocker chain completed") for v in violations)
    assert any(v.startswith("jobs of chains the producer never committed") for v in violations)
