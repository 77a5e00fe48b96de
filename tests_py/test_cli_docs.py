"""Runs the shell walkthrough of docs/cli.md against a fresh, empty database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cli.md"


def blocks() -> list[tuple[str, list[str]]]:
    """(sh block, lines its output must contain) in document order."""
    found = re.findall(r"```(sh|text)\n(.*?)```", DOC.read_text(), flags=re.S)
    steps: list[tuple[str, list[str]]] = []
    for kind, body in found:
        if kind == "sh":
            steps.append((body, []))
        else:
            steps[-1][1].extend(line.rstrip() for line in body.splitlines() if line.strip())
    return steps


def test_cli_walkthrough(new_database, tmp_path: Path) -> None:
    dsn = new_database()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "DSN": dsn, "TMPDIR": str(tmp_path),
           "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    steps = blocks()
    assert len(steps) >= 5
    for script, expected in steps:
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{script}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
        # columns are sized to their content: compare words, not spacing
        lines = [line.split() for line in out.stdout.splitlines()]
        for want in expected:
            if not any(words[: len(want.split())] == want.split() for words in lines):
                pytest.fail(f"{want!r} not in the output of\n{script}\n--- got\n{out.stdout}")
