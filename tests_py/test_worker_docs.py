"""Every ```python snippet of docs/worker.md runs, in order, against a fresh
database (the snippets' own asserts are the checks), and its ```sh block
runs a worker from the command line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import psycopg

DOC = Path(__file__).resolve().parents[1] / "docs" / "worker.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_worker_doc_snippets_run(dsn: str) -> None:
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 5
    module = types.ModuleType("queuert_worker_doc")
    module.DSN = dsn  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        for i, block in enumerate(blocks, start=1):
            code = compile(block, f"docs/worker.md[python block {i}]", "exec")
            exec(code, module.__dict__)  # noqa: S102 - the documented snippets are the test
    finally:
        del sys.modules[module.__name__]
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT type_name, status::text, count(*) FROM queuert.job GROUP BY 1, 2 ORDER BY 1"
        ).fetchall()
    assert rows == [
        ("charge", "completed", 1),
        ("follow-up", "completed", 1),
        ("ping", "completed", 1),
        ("square", "completed", 3),
        ("total", "completed", 1),
        ("welcome-email", "completed", 1),
    ]


APP = '''
import queuert

worker = queuert.Worker()  # conninfo: --dsn, else $DATABASE_URL


@worker.handler("welcome-email")
async def welcome(job):
    return job.continue_with("follow-up", job.input)


@worker.handler("follow-up")
def follow_up(job):
    return {"followed_up": job.input["user_id"]}
'''


def test_worker_doc_command_line_runs(dsn: str, tmp_path: Path) -> None:
    """The guide's ``sh`` block starts a worker that processes the named
    types until SIGTERM, on which it exits cleanly."""
    blocks = re.findall(r"^```sh\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)
    assert len(blocks) == 1 and "queuert worker myapp.jobs:worker" in blocks[0]
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "jobs.py").write_text(APP)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT chain_id FROM queuert.start_chain('welcome-email', '{\"user_id\": 7}')"
        ).fetchone()
        assert row is not None
        chain_id = row[0]
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "PYTHONPATH": str(tmp_path),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
    }
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", blocks[0]], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("LISTEN queuert_chain_completed")
            deadline = time.monotonic() + 120
            while True:
                done = conn.execute(
                    "SELECT status::text, output FROM queuert.chain WHERE chain_id = %s", (chain_id,)
                ).fetchone()
                if done is not None and done[0] == "completed":
                    break
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "the worker did not complete the chain"
                for _ in conn.notifies(timeout=1.0, stop_after=1):
                    pass
        assert done[1] == {"followed_up": 7}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, out
