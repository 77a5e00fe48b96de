"""Every ```python snippet of docs/client.md runs, in order, against a fresh
database (Django's default database pointed at it too); the snippets' own
asserts are the checks."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

from django_support import use_database

DOC = Path(__file__).resolve().parents[1] / "docs" / "client.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_client_doc_snippets_run(dsn: str) -> None:
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 10
    use_database(dsn)
    # a real module, so dataclasses and pydantic can resolve the snippets' names
    module = types.ModuleType("queuert_client_doc")
    module.DSN = dsn  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        for i, block in enumerate(blocks, start=1):
            code = compile(block, f"docs/client.md[python block {i}]", "exec")
            exec(code, module.__dict__)  # noqa: S102 - the documented snippets are the test
    finally:
        del sys.modules[module.__name__]
        from django.db import connections

        connections.close_all()
    # the snippets really wrote: the signup of user 10, the SQLAlchemy, async
    # SQLAlchemy and Django ones, and none of those rolled back
    import psycopg

    with psycopg.connect(dsn) as conn:
        users = [r[0] for r in conn.execute("SELECT id FROM app_user ORDER BY id")]
    assert users == [7, 10, 20, 21, 22]
