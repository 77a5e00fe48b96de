"""Runs the shell walkthrough of docs/embedded.md in an empty directory with no
server at $NOWHERE: the embedded PostgreSQL is started, used and stopped.

The directory is outside pytest's basetemp (see test_embedded.py: run as
root, the server's user must traverse it)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from queuert.embedded import EmbeddedPostgres

DOC = Path(__file__).resolve().parents[1] / "docs" / "embedded.md"


def blocks() -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for kind, body in re.findall(r"```(sh|text)\n(.*?)```", DOC.read_text(), flags=re.S):
        if kind == "sh":
            steps.append((body, []))
        else:
            steps[-1][1].extend(line.strip() for line in body.splitlines() if line.strip())
    return steps


def test_embedded_walkthrough() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        nowhere = f"postgresql://postgres@127.0.0.1:{sock.getsockname()[1]}/postgres"
    home = Path(tempfile.mkdtemp(prefix="queuert-embedded-doc-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "QUEUERT_DSN", "QUEUERT_PGDATA")}
    env.update(NOWHERE=nowhere, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    steps = blocks()
    assert len(steps) == 3
    try:
        outputs = []
        for script, expected in steps:
            out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=home, env=env,
                                 capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, f"{script}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
            outputs.append(out)
            for want in expected:
                if want not in out.stdout:
                    pytest.fail(f"{want!r} not in the output of\n{script}\n--- got\n{out.stdout}")
        assert "signup-report" in outputs[0].stdout and "using the embedded one" in outputs[0].stderr
        assert "no jobs in schema queuert" in outputs[1].stdout
        assert (home / ".queuert" / "pgdata" / "queuert-server.log").exists()
    finally:
        EmbeddedPostgres(home / ".queuert" / "pgdata").stop()
        shutil.rmtree(home, ignore_errors=True)
