"""The schema produced by all migrations plus sql/ equals the committed dump
``schema/queuert.sql``, so every schema change shows up in review.

Regenerate with ``make schema-dump`` after changing migrations/ or sql/.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("queuert_schema_dump", REPO / "scripts" / "schema_dump.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


schema_dump = _load_script()


@pytest.fixture(scope="module")
def regenerated(base_dsn: str) -> str:
    if shutil.which("pg_dump") is None:
        pytest.fail("pg_dump is not on PATH (install postgresql-client)")
    text: str = schema_dump.generate(base_dsn)
    return text


@pytest.mark.pg_major(
    15,
    reason="schema/queuert.sql is pg_dump output of PostgreSQL 15; 16 prints view "
    "definitions without the table alias",
)
def test_committed_schema_dump_is_up_to_date(regenerated: str) -> None:
    committed = schema_dump.DUMP_PATH.read_text(encoding="utf-8")
    if committed != regenerated:
        pytest.fail(
            "schema/queuert.sql differs from the schema that migrations/ + sql/ produce;"
            " run `make schema-dump` and commit the result:\n"
            + schema_dump.diff(committed, regenerated),
            pytrace=False,
        )


def test_dump_is_normalised_and_covers_the_engine(regenerated: str) -> None:
    lines = regenerated.splitlines()
    assert not [line for line in lines if line.startswith("SET ")]
    assert not [line for line in lines if "Dumped from" in line or "Dumped by" in line]
    assert not [line for line in lines if "set_config(" in line]
    assert "CREATE SCHEMA queuert;" in lines
    for needle in (
        "CREATE TABLE queuert.job (",
        "CREATE TABLE queuert.job_blocker (",
        "CREATE TABLE queuert.schema_migration (",
        "CREATE FUNCTION queuert.start_chain(",
        "CREATE FUNCTION queuert.claim(",
        "CREATE VIEW queuert.chain AS",
        "CREATE UNIQUE INDEX job_chain_position_idx ON queuert.job",
    ):
        assert any(line.startswith(needle) for line in lines), needle


def test_normalise_is_stable_and_strips_only_noise() -> None:
    raw = (
        "--\n-- PostgreSQL database dump\n--\n\n"
        "-- Dumped from database version 15.20\n-- Dumped by pg_dump version 15.20\n\n"
        "SET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n\n\n"
        "CREATE SCHEMA queuert;   \n\n"
        "--\n-- PostgreSQL database dump complete\n--\n\n"
    )
    out = schema_dump.normalise(raw)
    assert out.endswith("CREATE SCHEMA queuert;\n")
    assert "SET " not in out and "Dumped" not in out and "database dump" not in out
    assert "\n\n\n" not in out
