"""Every ```python snippet of docs/notify.md runs, in order, against a fresh
database, the shared Redis and NATS (on a prefix of this run's own) and a
PgBouncer of our own in transaction mode; the snippets' asserts are the
checks."""

from __future__ import annotations

import asyncio
import re
import sys
import types
from pathlib import Path

import nats
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from notify_brokers import NATS_URL, REDIS_URL, own_pgbouncer, unique_prefix

DOC = Path(__file__).resolve().parents[1] / "docs" / "notify.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


async def drop_bucket(bucket: str) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_key_value(bucket)
    except Exception:  # never created
        pass
    await nc.close()


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
