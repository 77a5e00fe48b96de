"""Several processes on one database file: claims never overlap while a
lease is valid, abandoned jobs are reaped and finished by others, nothing
is lost or completed twice, and "database is locked" never escapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import queuert._sqlite as qs

WORKER = Path(__file__).with_name("claim_worker.py")
REPO = Path(__file__).resolve().parents[2]


def test_processes_never_hold_one_job_at_once(db_path: str, tmp_path: Path) -> None:
    conn = qs.connect(db_path)
    jobs = 300
    qs.start_chains(conn, [{"type_name": "t", "input": n} for n in range(jobs)])
    env = {**os.environ, "PYTHONPATH": str(REPO / "python_client" / "src")}
    go = tmp_path / "go"
    procs = []
    for n in range(4):
        out = tmp_path / f"w{n}.jsonl"
        procs.append((out, subprocess.Popen(
            [sys.executable, str(WORKER), db_path, f"w{n}", str(out), "0.3", "0.1", str(go)],
            env=env, stderr=subprocess.PIPE, text=True,
        )))
    while not all(out.exists() or proc.poll() is not None for out, proc in procs):
        time.sleep(0.01)
    go.touch()
    for _out, proc in procs:
        _stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stderr
    claims = [json.loads(line) for out, _p in procs for line in out.read_text().splitlines()]

    by_job: dict[str, list[dict]] = defaultdict(list)
    for c in claims:
        by_job[c["job"]].append(c)
    assert len(by_job) == jobs, "every job was claimed"
    abandoned = 0
    for job, held in by_job.items():
        held.sort(key=lambda c: c["attempt"])
        assert [c["attempt"] for c in held] == list(range(1, len(held) + 1)), f"{job}: one claim per attempt"
        for earlier, later in zip(held, held[1:]):
            assert later["from"] >= earlier["until"], f"{job} claimed again while its lease was valid"
        abandoned += len(held) - 1
    assert abandoned > 0, "some jobs were abandoned and claimed again"

    final = conn.execute(
        "SELECT status, count(*), count(DISTINCT id) FROM queuert_job GROUP BY status"
    ).fetchall()
    assert final == [("completed", jobs, jobs)], "nothing lost"
    for job_id, attempt, completed_by, output in conn.execute(
        "SELECT id, attempt, completed_by, output FROM queuert_job"
    ).fetchall():
        last = by_job[job_id][-1]
        assert (attempt, completed_by, json.loads(output)) == (last["attempt"], last["worker"], {"by": last["worker"]}), (
            "completed once, by the holder of its last attempt"
        )
