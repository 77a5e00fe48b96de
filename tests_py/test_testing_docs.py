"""docs/testing.md is a small test project: each ```python block is the file
its first line names. They are written out and run by pytest, as a user
would (the plugin loads through the entry point); every test must pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "testing.md"


def files(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for block in re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M):
        first, _, body = block.partition("\n")
        name = re.fullmatch(r"# (\S+\.py)", first.strip())
        assert name is not None, f"a python block of {DOC.name} must start with '# <file>.py'"
        found[name.group(1)] = body
    return found


def test_the_testing_guide_runs(base_dsn: str, tmp_path: Path) -> None:
    project = files(DOC.read_text())
    assert {"conftest.py", "shop.py", "test_signup.py", "test_worker.py"} <= set(project)
    for name, body in project.items():
        (tmp_path / name).write_text(body)
    env = {k: v for k, v in os.environ.items() if k != "QUEUERT_TEST_DSN"}
    env["PYTHONPATH"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--queuert-dsn", base_dsn, str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tests = sum(len(re.findall(r"^def test_", body, flags=re.M)) for body in project.values())
    assert f"{tests} passed" in proc.stdout, proc.stdout
