"""Every ```python snippet of docs/worker.md runs, in order, against a fresh
database; the snippets' own asserts are the checks."""

from __future__ import annotations

import re
import sys
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
