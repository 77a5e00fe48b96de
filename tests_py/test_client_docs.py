"""Every ```python and ```sql snippet of docs/client.md runs, in document
order, against a fresh database (Django's default database pointed at it
too): python in one module namespace, sql through psql, as a reader would.
The snippets' own asserts are the checks, plus what the test reads back
afterwards."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import psycopg
from django_support import use_database

DOC = Path(__file__).resolve().parents[1] / "docs" / "client.md"


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every python and sql block, in document order."""
    return re.findall(r"^```(python|sql)\n(.*?)^```$", text, flags=re.S | re.M)


def run_psql(dsn: str, script: str) -> str:
    out = subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", "-"],
        input=script, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, f"psql failed:\n{script}\n--- stderr\n{out.stderr}"
    return out.stdout


def test_client_doc_snippets_run(dsn: str) -> None:
    blocks = code_blocks(DOC.read_text())
    assert sum(lang == "python" for lang, _ in blocks) >= 10
    assert sum(lang == "sql" for lang, _ in blocks) >= 1
    use_database(dsn)
    # a real module, so dataclasses and pydantic can resolve the snippets' names
    module = types.ModuleType("queuert_client_doc")
    module.DSN = dsn  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    sql_outputs = []
    try:
        for i, (lang, block) in enumerate(blocks, start=1):
            if lang == "sql":
                sql_outputs.append(run_psql(dsn, block))
                continue
            code = compile(block, f"docs/client.md[block {i}]", "exec")
            exec(code, module.__dict__)  # noqa: S102 - the documented snippets are the test
    finally:
        del sys.modules[module.__name__]
        from django.db import connections

        connections.close_all()
    with psycopg.connect(dsn) as conn:
        # the snippets really wrote: the signup of user 10, the SQLAlchemy,
        # async SQLAlchemy and Django ones, and none of those rolled back
        users = [r[0] for r in conn.execute("SELECT id FROM app_user ORDER BY id")]
        # the psql snippet started its chain, with its dedup key
        from_sql = conn.execute(
            "SELECT type_name, input, status::text FROM queuert.job WHERE dedup_key = 'welcome:7'"
        ).fetchall()
    assert users == [7, 10, 20, 21, 22]
    assert from_sql == [("send-welcome-email", {"user_id": 7}, "pending")]
    assert "send-welcome-email" in sql_outputs[0]
