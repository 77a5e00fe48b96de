"""queuert benchmark harness.

    python -m benchmarks.run            # full suite (make bench)
    python -m benchmarks.run --quick    # smoke version with tiny sizes (make bench-quick)
    python -m benchmarks.run --only floor,create-single --reps 5
    python -m benchmarks.run --only floor,process-atomic --concurrencies 1

Every workload runs on a brand-new database (copied from a migrated
template, so the schema install is never timed). Repetitions are
interleaved (rep 1 of every workload, then rep 2 ...), so slow drift of a
noisy machine hits floors and engine alike. Each figure is the median of the
repetitions, shown with min and max; ratios are taken against the raw-SQL
floors of the same run. Results go to benchmarks/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg

from . import claim_scale, create, create_client, dashboard, fan_in, floors, retention, sqlite
from .common import DEFAULT_DSN, Databases, Results, Sizes

ROOT = Path(__file__).resolve().parent

Workload = Callable[[Databases, Sizes, Results], None]


def _worker_workloads() -> dict[str, tuple[Workload, bool]]:
    """Workloads that need queuert.Worker; absent until it exists."""
    try:
        from . import memory, processing, telemetry
    except ImportError as e:  # the worker is not importable yet
        print(f"(worker workloads unavailable: {e})", file=sys.stderr)
        return {}
    workloads: dict[str, tuple[Workload, bool]] = {
        "process-staged": (processing.run_staged, True),
        "process-atomic": (processing.run_atomic, True),
        "chain-3": (processing.run_chain3, True),
        "telemetry": (telemetry.run, True),
        "wake-up": (processing.run_wakeup, True),
        "worker-memory": (memory.run_all, False),
    }
    try:
        from . import wakeup_notify
    except ImportError as e:  # no redis / nats client installed
        print(f"(wake-up-notify unavailable: {e})", file=sys.stderr)
        return workloads
    from . import create_notify

    workloads["wake-up-notify"] = (wakeup_notify.run, True)
    workloads["create-notify"] = (create_notify.run, True)
    return workloads


def workloads() -> dict[str, tuple[Workload, bool]]:
    """name -> (function, per_rep). A per-rep function is called once per
    repetition; the others run their repetitions themselves."""
    w: dict[str, tuple[Workload, bool]] = {
        "floor": (floors.run_once, True),
        "create-single": (create.run_single, True),
        "create-batch": (create.run_batch, True),
        "create-client": (create_client.run_client_forms, True),
        "fan-in": (fan_in.run_all, False),
        "claim-at-scale": (claim_scale.run_all, False),
        "retention": (retention.run_all, False),
        "dashboard": (dashboard.run_all, False),
        "sqlite": (sqlite.run_all, False),
    }
    w.update(_worker_workloads())
    return w


# (workload, metric, floor metric, target ratio or None, comparison)
RATIOS: list[tuple[str, str, str, float | None]] = [
    # the creation targets are judged on the paired figures (PAIRED below):
    # the floor and the workload run seconds apart, and this machine's commit
    # latency drifts by more than the margins in between
    ("create-single", "start_chain SQL, 1/tx", "single INSERT+COMMIT", None),
    ("create-batch", "start_chains x1,000", "INSERT..unnest 1,000/stmt", None),
    ("create-batch", "start_chains x100", "INSERT..unnest 1,000/stmt", None),
    ("create-batch", "start_chains x5,000", "INSERT..unnest 1,000/stmt", None),
    ("process-staged", "concurrency 1", "claim+complete 100/tx", 0.4),
    ("process-staged", "concurrency 10", "claim+complete 100/tx", 0.4),
    ("process-staged", "concurrency 50", "claim+complete 100/tx", 0.4),
    # issue 16: from a cold start (never analyzed) at least 0.7x of the floor;
    # judged on the adjacent row in PAIRED, this one is the run-wide median
    ("process-staged", "concurrency 10, cold", "claim+complete 100/tx", None),
    # default settings (prefetch "auto") above; claims of the free slots only here
    ("process-staged", "concurrency 1, prefetch 0", "claim+complete 100/tx", None),
    ("process-staged", "concurrency 10, prefetch 0", "claim+complete 100/tx", None),
    ("process-staged", "concurrency 50, prefetch 0", "claim+complete 100/tx", None),
    ("process-atomic", "concurrency 1", "claim+complete 1/tx", None),
    ("process-atomic", "concurrency 1, cold", "claim+complete 1/tx", None),
    ("process-atomic", "concurrency 10", "claim+complete 1/tx", None),
    ("process-atomic", "concurrency 50", "claim+complete 1/tx", None),
]

# (workload, metric, target) for metrics that are already ratios to a floor,
# measured in alternating blocks against it
PAIRED: list[tuple[str, str, float]] = [
    # what start_chain adds over raw SQL doing the same work (the ladder's
    # rung that inserts its row, returns its columns and sends the job_ready
    # notification start_chain sends), not a fixed ratio to the floor's bare
    # INSERT into a two-index table: the six CHECK constraints and DESIGN's
    # return columns stay (decided 2026-12-05)
    ("create-single", "ladder: start_chain / raw INSERT of the job row, RETURNING start_chain's columns, with its NOTIFY", 0.85),
    # a broker notifier with engine NOTIFY off must not cost creation throughput
    ("create-notify", "client.start_chain + Redis hooks, NOTIFY off", 1.0),
    ("create-notify", "client.start_chain + NATS hooks, NOTIFY off", 1.0),
    # the same claim in a deployment's shape (create_notify_deploy.py: 4
    # producer processes, 4 idle listeners per side)
    ("create-notify", "4 producers, 4 listeners: start_chain + Redis hooks, NOTIFY off", 1.0),
    ("create-notify", "4 producers, 4 listeners: start_chain + NATS hooks, NOTIFY off", 1.0),
    ("create-batch", "paired: start_chains x1,000", 0.75),
    # the client against the raw SQL call it makes, on the same kind of
    # connection (issue 16)
    ("create-client", "start_chain: client / raw sync", 0.95),
    ("create-client", "start_chain: aio / raw async", 0.95),
    ("create-client", "start_chains x1,000: client / raw sync", 0.9),
    ("create-client", "start_chains x1,000: aio / raw async", 0.9),
    # the worker against make bench's own floor and cold against analyzed,
    # each pair run back to back within a repetition (processing.py: the
    # paired trio); issue 16 items 3 and 5, issue 19
    ("process-staged", "concurrency 10, cold / floor 100/tx, adjacent", 0.7),
    ("process-staged", "concurrency 10, cold / analyzed, adjacent", 0.9),
    ("process-atomic", "concurrency 1 / floor 1/tx, adjacent", 0.8),
    ("process-atomic", "concurrency 1, cold / floor 1/tx, adjacent", 0.8),
    ("process-atomic", "concurrency 1, cold / analyzed, adjacent", 0.9),
    # SQLite (issue 14): the client against raw sqlite3 on the same WAL file
    # (the claim+complete pairs are the engine calls a worker makes, shown
    # as ratios without a target: the targets are the worker's)
    # the worker on SQLite (a process draining no-op jobs) against the
    # claim+complete 1/tx floor, in alternating blocks (benchmarks/sqlite_worker.py);
    # each with synchronous=FULL and (", NORMAL") NORMAL
    *(
        ("sqlite", f"{name}{suffix}: queuert / floor", 0.5)
        for suffix in ("", ", NORMAL")
        for name in (
            "create-single, client",
            "create-batch x1,000, client",
            "worker staged c1",
            "worker staged c10",
            "worker atomic c1",
        )
    ),
]

# (workload, cold metric, analyzed metric, target): jobs drained on a fresh
# install without statistics against the same drain after VACUUM ANALYZE,
# in the same run (issue 19)
COLD: list[tuple[str, str, str, float]] = [
    ("process-staged", "concurrency 10, cold", "concurrency 10", 0.9),
    ("process-atomic", "concurrency 1, cold", "concurrency 1", 0.9),
]

# (workload, metric, limit, description) for absolute targets
LIMITS: list[tuple[str, str, float, str]] = [
    # issue 16 item 4 (was 2 / 5 ms); the "p50 split" rows say where the
    # time goes (benchmarks/wakeup_trace.py)
    ("wake-up", "p50", 1.5, "<= 1.5 ms"),
    ("wake-up", "p99", 3.0, "<= 3 ms"),
    ("fan-in", "last blocker -> dependent claimed", 1000.0, "< 1 s"),
    # issue 16: the worker's memory must not grow over a long drain
    ("worker-memory", "long drain, concurrency 10: growth, end - first tenth", 1.0, "<= 1 MiB"),
    ("dashboard", "first page: HTTP", 100.0, "< 100 ms"),
    ("dashboard", "type filter (10%): HTTP", 100.0, "< 100 ms"),
    ("dashboard", "status failed (1%): HTTP", 100.0, "< 100 ms"),
    # wake-up-notify (benchmarks/wakeup_notify.py): each broker's p50 within
    # 1 ms of LISTEN/NOTIFY's in the same repetition, every p99 <= 5 ms
    *[("wake-up-notify", f"{label} p50 - LISTEN p50", 1.0, "<= 1 ms")
      for label in ("Redis", "Redis Cluster", "NATS", "Redis via PgBouncer")],
    *[("wake-up-notify", f"{label} p99", 5.0, "<= 5 ms")
      for label in ("LISTEN/NOTIFY", "Redis", "Redis Cluster", "NATS", "Redis via PgBouncer")],
]


def machine_info(dsn: str) -> dict[str, Any]:
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    settings = [
        "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "commit_delay",
        "shared_buffers", "work_mem", "jit", "max_connections", "wal_level",
        "max_wal_size", "checkpoint_timeout", "shared_preload_libraries",
    ]
    with psycopg.connect(dsn) as conn:
        version = conn.execute("SELECT version()").fetchone()[0]  # type: ignore[index]
        values = {s: conn.execute(f"SHOW {s}").fetchone()[0] for s in settings}  # type: ignore[index]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "psycopg": psycopg.__version__,
        "postgresql": version,
        "settings": values,
        "git_commit": commit,
    }


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def table(results: Results) -> tuple[str, list[dict[str, Any]]]:
    ratio_rows: list[dict[str, Any]] = []
    ratio_of: dict[tuple[str, str], tuple[float, float | None]] = {}
    for wl, metric, floor_metric, target in RATIOS:
        m, f = results.get(wl, metric), results.get("floor", floor_metric)
        if m is None or f is None or not m.values or not f.values:
            continue
        r = m.median / f.median
        ratio_of[(wl, metric)] = (r, target)
        ratio_rows.append(
            {"workload": wl, "metric": metric, "floor": floor_metric, "ratio": r,
             "target": target, "met": None if target is None else r >= target}
        )
    cold_of: dict[tuple[str, str], tuple[float, float]] = {}
    for wl, metric, analyzed_metric, target in COLD:
        m, a = results.get(wl, metric), results.get(wl, analyzed_metric)
        if m is None or a is None or not m.values or not a.values:
            continue
        r = m.median / a.median
        cold_of[(wl, metric)] = (r, target)
        ratio_rows.append(
            {"workload": wl, "metric": metric, "floor": f"{analyzed_metric} (analyzed)", "ratio": r,
             "target": target, "met": r >= target}
        )
    limit_of = {(wl, metric): (lim, desc) for wl, metric, lim, desc in LIMITS}
    paired_target = {(wl, metric): target for wl, metric, target in PAIRED}
    scale_empty = results.get("claim-at-scale", "empty claim p99")
    lines = [
        "| workload | metric | median | min | max | unit | vs floor / target |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for (wl, metric), m in results.metrics.items():
        if not m.values:
            continue
        extra = ""
        if (wl, metric) in ratio_of:
            r, target = ratio_of[(wl, metric)]
            extra = f"{r:.2f}x" + (
                "" if target is None else f" (target >= {target}: {'met' if r >= target else 'MISSED'})"
            )
        elif (wl, metric) in paired_target:
            target = paired_target[(wl, metric)]
            extra = f"paired (target >= {target}: {'met' if m.median >= target else 'MISSED'})"
            ratio_rows.append({"workload": wl, "metric": metric, "floor": "paired blocks",
                               "ratio": m.median, "target": target, "met": m.median >= target})
        elif (wl, metric) in limit_of:
            lim, desc = limit_of[(wl, metric)]
            ok = m.median <= lim if "<=" in desc else m.median < lim
            extra = f"target {desc}: {'met' if ok else 'MISSED'}"
            ratio_rows.append({"workload": wl, "metric": metric, "value": m.median,
                               "target": desc, "met": ok})
        elif wl == "claim-at-scale" and metric == "loaded claim p99" and scale_empty:
            r = m.median / scale_empty.median
            extra = f"{r:.2f}x empty (target <= 2x: {'met' if r <= 2 else 'MISSED'})"
            ratio_rows.append({"workload": wl, "metric": metric, "floor": "empty claim p99",
                               "ratio": r, "target": "<= 2", "met": r <= 2})
        if (wl, metric) in cold_of:
            r, target = cold_of[(wl, metric)]
            cold = f"{r:.2f}x analyzed (target >= {target}: {'met' if r >= target else 'MISSED'})"
            extra = f"{cold}; {extra}" if extra else cold
        lines.append(
            f"| {wl} | {metric} | {_fmt(m.median)} | {_fmt(min(m.values))} | "
            f"{_fmt(max(m.values))} | {m.unit} | {extra} |"
        )
    return "\n".join(lines), ratio_rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dsn", default=os.environ.get("QUEUERT_BENCH_DSN", DEFAULT_DSN),
                   help="server to benchmark (databases are created and dropped on it)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of ~1 minute")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    p.add_argument("--only", default="", help="comma-separated workload names")
    p.add_argument("--concurrencies", default="",
                   help="comma-separated worker concurrencies for the processing rows (default 1,10,50)")
    p.add_argument("--out", default=str(ROOT / "results"), help="directory for the JSON file")
    args = p.parse_args(argv)

    sizes = Sizes.quick() if args.quick else Sizes()
    if args.reps:
        sizes.reps = args.reps
    if args.concurrencies:
        sizes.concurrencies = tuple(int(c) for c in args.concurrencies.split(","))
    all_w = workloads()
    chosen = [w.strip() for w in args.only.split(",") if w.strip()] or list(all_w)
    unknown = [w for w in chosen if w not in all_w]
    if unknown:
        p.error(f"unknown workload(s) {unknown}; known: {', '.join(all_w)}")
    # the claim floors run once a repetition, in the adjacent trio of the
    # processing workload that is compared with them (processing.py)
    sizes.claim_floors_in_trios = tuple(
        per_tx for per_tx, wl in ((100, "process-staged"), (1, "process-atomic")) if wl in chosen
    )

    info = machine_info(args.dsn)
    print(f"queuert benchmarks ({'quick' if args.quick else 'full'}), {info['cpu_count']} CPUs, "
          f"{info['memory_gib']} GiB, {info['postgresql'].split(' on ')[0]}, "
          f"fsync={info['settings']['fsync']} synchronous_commit={info['settings']['synchronous_commit']}",
          flush=True)
    results = Results()
    failures: list[str] = []
    # wall seconds per workload, summed over its repetitions (the JSON's
    # "workload_seconds": where make bench's time goes)
    spent: dict[str, float] = {}
    started = time.perf_counter()
    dbs = Databases(args.dsn)
    try:
        def run(name: str, fn: Workload, s: Sizes) -> None:
            t = time.perf_counter()
            try:
                fn(dbs, s, results)
            except Exception:  # a broken workload must not hide the others
                traceback.print_exc()
                failures.append(name)
            took = time.perf_counter() - t
            spent[name] = spent.get(name, 0.0) + took
            print(f"  {name}: {took:.1f}s", flush=True)

        per_rep = [w for w in chosen if all_w[w][1]]
        whole = [w for w in chosen if not all_w[w][1]]
        for rep in range(sizes.reps):
            print(f"repetition {rep + 1}/{sizes.reps}", flush=True)
            for name in per_rep:
                if name not in failures:
                    run(name, all_w[name][0], sizes)
        for name in whole:
            run(name, all_w[name][0], sizes)
    finally:
        dbs.close()
    total = time.perf_counter() - started

    text, ratios = table(results)
    print()
    print(text)
    for wl, notes in results.notes.items():
        for n in notes:
            print(f"\n[{wl}] {n}")
    print("\nseconds per workload: " + ", ".join(f"{k} {v:.0f}" for k, v in spent.items()))
    print(f"total {total:.0f}s")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = out_dir / f"{stamp}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps({
        "started_at": stamp,
        "mode": "quick" if args.quick else "full",
        "workloads": chosen,  # a run with --only measured these alone
        "seconds": round(total, 1),
        "workload_seconds": {k: round(v, 1) for k, v in spent.items()},
        "sizes": sizes.__dict__ | {"concurrencies": list(sizes.concurrencies)},
        "machine": info,
        "metrics": [m.as_json() for m in results.metrics.values()],
        "ratios": ratios,
        "notes": results.notes,
        "failed_workloads": failures,
        "table_markdown": text,
    }, indent=2, default=str))
    print(f"wrote {out}")
    if failures:
        print(f"FAILED workloads: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
