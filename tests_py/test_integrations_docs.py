"""docs/integrations.md: its ```python blocks run in order against a fresh
database, except those whose first line names a file of examples/django_project
(tests_py/test_django.py runs that project): each of those must be found in
its file, verbatim, so the guide shows the code that is tested."""

from __future__ import annotations

import re
import sys
import textwrap
import types
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "integrations.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)


def test_django_blocks_are_the_example_projects_code() -> None:
    quoted = [b for b in python_blocks() if b.startswith("# examples/")]
    assert len(quoted) >= 4
    for block in quoted:
        first, _, body = block.partition("\n")
        source = (ROOT / first[2:].strip()).read_text()
        assert textwrap.dedent(body) in textwrap.dedent(source) or body in source, (
            f"{first[2:]} does not contain the block:\n{body}"
        )


def test_integration_snippets_run(dsn: str) -> None:
    runnable = [b for b in python_blocks() if not b.startswith("# examples/")]
    assert len(runnable) == 4
    module = types.ModuleType("queuert_integrations_doc")
    module.DSN = dsn  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        for i, block in enumerate(runnable, start=1):
            exec(compile(block, f"docs/integrations.md[python block {i}]", "exec"), module.__dict__)  # noqa: S102
    finally:
        del sys.modules[module.__name__]
    with psycopg.connect(dsn) as conn:
        members = [r[0] for r in conn.execute("SELECT id FROM member ORDER BY id")]
        jobs = conn.execute("SELECT count(*) FROM queuert.job").fetchone()
    assert members == [1, 3, 4]  # 2 was rolled back with its job
    assert jobs == (3,)
