"""RELIABILITY.md says which test proves each guarantee: every test it
names exists, and every row of its proof table names at least one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "RELIABILITY.md"


def test_every_named_test_exists() -> None:
    text = DOC.read_text()
    named = set(re.findall(r"`(tests_py/[\w/]+\.py)::(\w+)`", text))
    assert len(named) >= 30
    missing = []
    for path, name in sorted(named):
        source = ROOT / path
        if not source.exists() or not re.search(rf"^(async )?def {name}\(", source.read_text(), flags=re.M):
            missing.append(f"{path}::{name}")
    suites = set(re.findall(r"`(tests_sql/[\w]+\.sql)`", text))
    missing += sorted(s for s in suites if not (ROOT / s).exists())
    assert missing == [], f"RELIABILITY.md names tests that do not exist: {missing}"


def test_every_guarantee_names_a_test() -> None:
    table = DOC.read_text().split("## Which test proves what", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| guarantee")]
    assert len(rows) >= 15
    for row in rows:
        proof = row.split("|")[2]
        assert "tests_py/" in proof or "tests_sql/" in proof or "torture" in proof, row
