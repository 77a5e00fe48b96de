"""Every ```python snippet of docs/sqlite.md runs, in order; the snippets'
own asserts are the checks."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "sqlite.md"


def test_sqlite_doc_snippets_run() -> None:
    blocks = re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)
    assert len(blocks) >= 4
    module = types.ModuleType("queuert_sqlite_doc")
    sys.modules[module.__name__] = module
    try:
        for i, block in enumerate(blocks, start=1):
            code = compile(block, f"docs/sqlite.md[python block {i}]", "exec")
            exec(code, module.__dict__)  # noqa: S102 - the documented snippets are the test
    finally:
        del sys.modules[module.__name__]
    conn = module.conn  # type: ignore[attr-defined]
    assert conn.execute("SELECT count(*) FROM queuert_job WHERE type_name = 'publish'").fetchone() == (1,)
