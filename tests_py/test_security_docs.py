"""The shell snippet of docs/security.md runs as written, and sets up what
the guide says it does.

It creates server-wide roles with fixed names (``queuert_owner``,
``app_user``), so it runs on a throwaway cluster of its own
(tests_py/pgcluster.py), never on a server other tests share.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from pgcluster import TempCluster

DOC = Path(__file__).resolve().parents[1] / "docs" / "security.md"


@pytest.fixture(scope="module")
def cluster() -> Iterator[TempCluster]:
    with TempCluster(prefix="queuert-security-doc-") as pg:
        yield pg


def dsn(pg: TempCluster, user: str) -> str:
    return f"postgresql://{user}@127.0.0.1:{pg.port}/app"


def test_security_doc_snippet_sets_up_least_privilege(cluster: TempCluster) -> None:
    blocks = re.findall(r"^```sh\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)
    assert len(blocks) == 1
    with psycopg.connect(cluster.dsn, autocommit=True) as admin:
        admin.execute("CREATE DATABASE app")
    env = {
        **os.environ,
        "ADMIN_DSN": dsn(cluster, "postgres"),
        "OWNER_DSN": dsn(cluster, "queuert_owner"),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
    }
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", blocks[0]], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{blocks[0]}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"

    with psycopg.connect(dsn(cluster, "postgres"), autocommit=True) as admin:
        # the owner role, not a superuser, owns the schema and runs the functions
        owners = admin.execute(
            "SELECT DISTINCT pg_get_userbyid(p.proowner), p.prosecdef FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'queuert' AND p.proname = 'start_chain'"
        ).fetchall()
        assert owners == [("queuert_owner", True)]
        assert admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'queuert_owner'").fetchone() == (False,)

    with psycopg.connect(dsn(cluster, "app_user"), autocommit=True) as app:
        started = app.execute("SELECT id, status FROM queuert.start_chain('doc-job')").fetchone()
        assert started is not None and started[1] == "pending"
        assert app.execute("SELECT count(*) FROM queuert.job").fetchone() == (1,)
        for statement in (
            "UPDATE queuert.job SET priority = 1",
            "DELETE FROM queuert.job",
            "SELECT queuert._new_job_id()",
            "CREATE TABLE queuert.mine (x int)",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                app.execute(statement)
