"""Every ```python snippet of docs/sqlite.md runs, in order; the snippets'
own asserts are the checks. Its ```sh block runs too, in an empty
directory, and must leave a migrated file behind."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
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


def test_sqlite_doc_shell_block_migrates_a_file(tmp_path: Path) -> None:
    blocks = re.findall(r"^```sh\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)
    assert len(blocks) == 1
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", blocks[0]], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{blocks[0]}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
    conn = sqlite3.connect(tmp_path / "app.db")
    try:
        applied = [r[1] for r in conn.execute("SELECT * FROM queuert_schema_migration ORDER BY 1")]
        shipped = sorted(m.stem for m in (DOC.parents[1] / "sqlite" / "migrations").glob("*.sql"))
        assert applied == shipped and "applied 0001_init" in out.stdout
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT count(*) FROM queuert_job").fetchone() == (0,)
    finally:
        conn.close()
