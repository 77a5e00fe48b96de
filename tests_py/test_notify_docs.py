"""Every ```python snippet of docs/notify.md runs, in order, against a fresh
database, the shared Redis and NATS (on a prefix of this run's own) and a
PgBouncer of our own in transaction mode; the snippets' asserts are the
checks. The ```sql block (indented in a numbered list) runs on a
throwaway cluster of its own, because it sets a server-wide role.
"""

from __future__ import annotations

import asyncio
import re
import sys
import textwrap
import types
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from notify_brokers import NATS_URL, REDIS_URL, drop_bucket, own_pgbouncer, unique_prefix
from pgcluster import TempCluster

DOC = Path(__file__).resolve().parents[1] / "docs" / "notify.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_notify_doc_snippets_run(dsn: str) -> None:
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 4
    params = conninfo_to_dict(dsn)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} SET queuert.notify = 'none'").format(sql.Identifier(params["dbname"])))
    prefix = unique_prefix()
    with own_pgbouncer(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)) as bouncer:
        module = types.ModuleType("queuert_notify_doc")
        module.__dict__.update(
            DSN=dsn,
            REDIS_URL=REDIS_URL,
            NATS_URL=NATS_URL,
            PREFIX=prefix,
            POOLED_DSN=make_conninfo(**{**params, "host": "127.0.0.1", "port": str(bouncer.port)}),  # type: ignore[arg-type]
        )
        sys.modules[module.__name__] = module
        try:
            for i, block in enumerate(blocks, start=1):
                code = compile(block, f"docs/notify.md[python block {i}]", "exec")
                exec(code, module.__dict__)  # noqa: S102 - the documented snippets are the test
        finally:
            del sys.modules[module.__name__]
            asyncio.run(drop_bucket(f"{prefix}-wake-hints"))
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT type_name, status::text FROM queuert.job ORDER BY 1").fetchall()
    assert rows == [("greet", "completed"), ("report", "completed")]


def test_notify_doc_sql_block_turns_notify_off_for_the_role_and_the_database() -> None:
    """``ALTER ROLE app_worker`` / ``ALTER DATABASE app`` as the guide writes
    them: afterwards a session of that role, and any session of that
    database, has queuert.notify = 'none'."""
    (block,) = [textwrap.dedent(body) for _indent, body in re.findall(
        r"^( *)```sql\n(.*?)^\1```$", DOC.read_text(), flags=re.S | re.M)]
    with TempCluster(prefix="queuert-notify-doc-") as pg:
        with psycopg.connect(pg.dsn, autocommit=True) as admin:
            admin.execute("CREATE DATABASE app")
            admin.execute("CREATE DATABASE other")
            admin.execute("CREATE ROLE app_worker LOGIN")
        app = make_conninfo(pg.dsn, dbname="app")
        with psycopg.connect(app, autocommit=True) as admin:
            admin.execute(block)
        for dbname, user in (("app", "postgres"), ("other", "app_worker")):
            with psycopg.connect(make_conninfo(pg.dsn, dbname=dbname, user=user)) as conn:
                assert conn.execute("SELECT current_setting('queuert.notify', true)").fetchone() == ("none",)
        with psycopg.connect(make_conninfo(pg.dsn, dbname="other")) as conn:  # neither the role nor the database
            assert conn.execute("SELECT current_setting('queuert.notify', true)").fetchone() in ((None,), ("",))
