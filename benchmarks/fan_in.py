"""Workload 6: fan-in. One job blocked on N chains (N = 10,000).

Run: start N blocker chains (start_chains, 1,000 per call), start the
dependent with all N as blockers (one start_chain), claim the blockers and
complete N-1 of them in batches (claim 100 + complete_jobs per transaction),
then complete the last one with complete() in its own transaction while a
second connection polls claim() for the dependent.

Reported:
- last blocker -> dependent claimed: from the start of the last complete()
  call to the moment claim() returned the dependent (includes the completion
  transaction, its commit, and the claim that builds the 10,000-entry
  blockers array);
- commit -> claimable: from the last completion's COMMIT returning to the
  dependent's claim returning;
- whole run: from the first start_chains to the dependent claimed.
"""

from __future__ import annotations

import json
import time
import uuid

import psycopg

from .common import SCHEMA, Databases, Results, Sizes

NAME = "fan-in"


def run_once(dsn: str, n: int) -> dict[str, float]:
    worker = f"fanin-{uuid.uuid4()}"
    with psycopg.connect(dsn, autocommit=True) as conn, psycopg.connect(dsn) as poller:
        t_run = time.perf_counter()
        ids: list[str] = []
        for start in range(0, n, 1000):
            items = [
                {"type_name": "fanin-blocker", "input": {"n": i}}
                for i in range(start, min(n, start + 1000))
            ]
            rows = conn.execute(
                f"SELECT id FROM {SCHEMA}.start_chains(%s::jsonb)", (json.dumps(items),)
            ).fetchall()
            ids.extend(str(r[0]) for r in rows)
        t_dep = time.perf_counter()
        dep = conn.execute(
            f"SELECT id, status FROM {SCHEMA}.start_chain(type_name => 'fanin-dependent', "
            "blockers => %s::uuid[])",
            (ids,),
        ).fetchone()
        start_dep_s = time.perf_counter() - t_dep
        assert dep is not None and dep[1] == "blocked", dep
        conn.autocommit = False
        claimed: list[str] = []
        while True:
            rows = conn.execute(
                f"SELECT id FROM {SCHEMA}.claim(%s, ARRAY['fanin-blocker'], 100)", (worker,)
            ).fetchall()
            conn.commit()
            if not rows:
                break
            claimed.extend(str(r[0]) for r in rows)
        assert len(claimed) == n, (len(claimed), n)
        last = claimed.pop()
        for start in range(0, len(claimed), 100):
            conn.execute(
                f"SELECT * FROM {SCHEMA}.complete_jobs(%s, %s::uuid[])",
                (worker, claimed[start : start + 100]),
            ).fetchall()
            conn.commit()
        probe = poller.execute(
            f"SELECT count(*) FROM {SCHEMA}.claim(%s, ARRAY['fanin-dependent'], 1)",
            ("poller",),
        ).fetchone()
        poller.rollback()
        assert probe is not None and probe[0] == 0, "dependent claimable too early"

        t0 = time.perf_counter()
        conn.execute(f"SELECT * FROM {SCHEMA}.complete(%s::uuid, %s)", (last, worker)).fetchall()
        conn.commit()
        t_commit = time.perf_counter()
        while True:
            row = poller.execute(
                f"SELECT id FROM {SCHEMA}.claim(%s, ARRAY['fanin-dependent'], 1)", ("poller",)
            ).fetchone()
            poller.commit()
            if row is not None:
                break
            if time.perf_counter() - t_commit > 30:
                raise TimeoutError("dependent never became claimable")
        t1 = time.perf_counter()
        assert str(row[0]) == str(dep[0])
        return {
            "last blocker -> dependent claimed": (t1 - t0) * 1000,
            "commit -> claimable": (t1 - t_commit) * 1000,
            "start dependent with N blockers": start_dep_s * 1000,
            "whole run": t1 - t_run,
        }


def run_all(dbs: Databases, sizes: Sizes, results: Results) -> None:
    for _ in range(sizes.reps):
        with dbs.fresh("fan-in") as dsn:
            r = run_once(dsn, sizes.fanin_n)
        for k, v in r.items():
            results.add(NAME, k, v, "s" if k == "whole run" else "ms", False)
    results.note(NAME, f"{sizes.fanin_n:,} blocker chains, one dependent")
