"""The ```sql, ```python and ```sh snippets of docs/recurring.md and
docs/limits.md run, in order, against a fresh database (the snippets' own
asserts are the checks; the CLI finds the database through DATABASE_URL)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def blocks(name: str) -> list[tuple[str, str]]:
    return re.findall(r"^```(sql|python|sh)\n(.*?)^```$", (DOCS / name).read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("name", ["recurring.md", "limits.md"])
def test_doc_snippets_run(dsn: str, name: str) -> None:
    found = blocks(name)
    assert {kind for kind, _ in found} >= {"sql", "python"}
    env = {**os.environ, "DATABASE_URL": dsn,
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    namespace: dict[str, object] = {"DSN": dsn}
    for i, (kind, body) in enumerate(found, start=1):
        where = f"docs/{name}[{kind} block {i}]"
        if kind == "python":
            exec(compile(body, where, "exec"), namespace)  # noqa: S102 - the snippets are the test
            continue
        command = ["psql", dsn, "-v", "ON_ERROR_STOP=1", "-q"] if kind == "sql" else ["bash", "-euo", "pipefail"]
        out = subprocess.run(command, input=body, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{where}\n{out.stdout}\n{out.stderr}"
    with psycopg.connect(dsn) as conn:
        left = conn.execute("SELECT count(*) FROM queuert.schedule").fetchone()
    assert left == (0,), "each snippet deletes the schedule it sets"
