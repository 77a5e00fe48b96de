"""The README's speed table, made from benchmarks/results (issue 16: show
the spread of recent runs, not the best one).

    python -m benchmarks.readme_table            # print the table
    python -m benchmarks.readme_table --write    # replace it in README.md

Each row is one judged figure: the latest full run's value, the median and
range over the last five runs that measured it (quiet and loaded alike), the
target, and in how many of those runs today's target was met. The table sits
in README.md between the two marker comments below; the words around it
(why a figure misses) are written by hand.
"""

from __future__ import annotations

import argparse
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from .history import RESULTS, spreads

README = Path(__file__).resolve().parent.parent / "README.md"
START = "<!-- speed-table: made by python -m benchmarks.readme_table --write -->"
END = "<!-- speed-table: end -->"


class Row(NamedTuple):
    label: str
    workload: str
    metric: str
    against: str | None  # None: any (the figure is named by workload and metric alone)
    unit: str  # "x", "ms" or "MiB"
    # only for figures benchmarks/run.py does not judge; the others take
    # run.py's own target (targets()), so the two cannot drift apart
    better: str | None = None  # ">=" or "<="
    target: float | None = None


_CLIENT = "create-client"
_NOTIFY = "wake-up-notify"
ROWS: list[Row] = [
    Row("create-single: `start_chain` over raw SQL doing its work, NOTIFY included (ladder)", "create-single",
        "ladder: start_chain / raw INSERT of the job row, RETURNING start_chain's columns, with its NOTIFY", None, "x"),
    Row("create-batch: `start_chains` x1,000 over INSERT .. unnest", "create-batch",
        "paired: start_chains x1,000", None, "x"),
    Row("client `start_chain` over its SQL call, sync", _CLIENT, "start_chain: client / raw sync", None, "x"),
    Row("client `aio.start_chain` over its SQL call, async", _CLIENT, "start_chain: aio / raw async", None, "x"),
    Row("client `start_chains` x1,000 over its SQL call, sync", _CLIENT,
        "start_chains x1,000: client / raw sync", None, "x"),
    Row("client `aio.start_chains` x1,000 over its SQL call, async", _CLIENT,
        "start_chains x1,000: aio / raw async", None, "x"),
    Row("staged worker, concurrency 10, over claim+complete 100/tx", "process-staged", "concurrency 10",
        "claim+complete 100/tx", "x"),
    Row("staged worker c10 from a cold start (never analyzed) over the floor, adjacent", "process-staged",
        "concurrency 10, cold / floor 100/tx, adjacent", None, "x"),
    Row("staged worker c10 cold over analyzed, adjacent", "process-staged",
        "concurrency 10, cold / analyzed, adjacent", None, "x"),
    Row("atomic worker, concurrency 1, over claim+complete 1/tx, adjacent", "process-atomic",
        "concurrency 1 / floor 1/tx, adjacent", None, "x"),
    Row("wake-up p50, commit to the handler's first line", "wake-up", "p50", None, "ms"),
    Row("wake-up p99", "wake-up", "p99", None, "ms"),
    *[Row(f"wake-up p50 over LISTEN's: {b}", _NOTIFY, f"{b} p50 - LISTEN p50", None, "ms")
      for b in ("Redis", "Redis Cluster", "NATS", "Redis via PgBouncer")],
    *[Row(f"wake-up p99: {b}", _NOTIFY, f"{b} p99", None, "ms")
      for b in ("LISTEN/NOTIFY", "Redis", "Redis Cluster", "NATS", "Redis via PgBouncer")],
    *[Row(f"creation with a {b} notifier, engine NOTIFY off, {shape}over today's path", "create-notify",
          f"{prefix}start_chain + {b} hooks, NOTIFY off", None, "x")
      for shape, prefix in (("", "client."), ("4 producers and 4 idle listeners a side, ", "4 producers, 4 listeners: "))
      for b in ("Redis", "NATS")],
    Row("fan-in: last of 10,000 blockers to the dependent claimed", "fan-in",
        "last blocker -> dependent claimed", None, "ms"),
    Row("claim p99, 2M completed+blocked rows over an empty table", "claim-at-scale",
        "loaded claim p99", None, "x", "<=", 2.0),
    Row("claim p99, 3M completed chains retained over an empty table", "retention",
        "claim p99: retained / empty", None, "x", "<=", 1.25),
    Row("dashboard chain list, 1M jobs, first page (HTTP)", "dashboard", "first page: HTTP", None, "ms"),
    Row("worker memory growth over a 100,000-job drain (end - first tenth)", "worker-memory",
        "long drain, concurrency 10: growth, end - first tenth", None, "MiB"),
    Row("OpenTelemetry SDK on / off, atomic c1", "telemetry", "atomic c1, ratio with SDK / without",
        None, "x", ">=", 0.9),
    *[Row(f"SQLite {mode}: {label} over raw sqlite3", "sqlite", f"{metric}{suffix}: queuert / floor", None,
          "x")
      for mode, suffix in (("FULL", ""), ("NORMAL", ", NORMAL"))
      for label, metric in (("client `start_chain`", "create-single, client"),
                            ("client `start_chains` x1,000", "create-batch x1,000, client"),
                            ("staged worker c10", "worker staged c10"),
                            ("atomic worker c1", "worker atomic c1"))],
]

_COMPARE: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


def targets() -> dict[tuple[str, str], tuple[str, float]]:
    """(workload, metric) -> (">=" or "<=", target): the targets
    benchmarks/run.py judges its runs by."""
    from . import run  # the harness and its workloads: only when a table is made

    out: dict[tuple[str, str], tuple[str, float]] = {}
    for wl, metric, _floor, target in run.RATIOS:
        if target is not None:
            out[(wl, metric)] = (">=", target)
    for wl, metric, target in run.PAIRED:
        out[(wl, metric)] = (">=", target)
    for wl, metric, limit, _desc in run.LIMITS:
        out[(wl, metric)] = ("<=", limit)
    return out


def _judged_by(row: Row, judged: dict[tuple[str, str], tuple[str, float]]) -> tuple[str, float]:
    if row.better is not None and row.target is not None:
        return row.better, row.target
    return judged[(row.workload, row.metric)]


def _show(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.2f} {unit}"


def _find(entries: list[dict[str, Any]], row: Row) -> dict[str, Any] | None:
    for e in entries:
        if e["workload"] == row.workload and e["metric"] == row.metric and (
                row.against is None or e["against"] == row.against):
            return e
    return None


def table(results_dir: Path = RESULTS, last: int = 5) -> str:
    entries = spreads(results_dir, last)
    judged = targets()
    lines = ["| figure | latest | last runs: median (min-max, runs) | target | met: latest; runs |",
             "|---|---:|---:|---:|---|"]
    for row in ROWS:
        e = _find(entries, row)
        better, goal = _judged_by(row, judged)
        target = f"{better} {_show(goal, row.unit)}".replace(">= ", "≥ ").replace("<= ", "≤ ")
        if e is None:
            lines.append(f"| {row.label} | not measured yet | | {target} | |")
            continue
        ok = [_COMPARE[better](v, goal) for v in e["values"]]
        spread = (f"{_show(e['median'], row.unit)} ({_show(e['min'], row.unit)}-{_show(e['max'], row.unit)}, "
                  f"{e['n']})")
        verdict = f"{'met' if ok[0] else '**missed**'}; {sum(ok)} of {len(ok)}"
        lines.append(f"| {row.label} | {_show(e['latest'], row.unit)} | {spread} | {target} | {verdict} |")
    return "\n".join(lines) + "\n"


def write(readme: Path = README) -> None:
    text = readme.read_text()
    head, sep, rest = text.partition(START)
    if not sep:
        raise SystemExit(f"{readme}: no {START!r} marker")
    _, sep, tail = rest.partition(END)
    if not sep:
        raise SystemExit(f"{readme}: no {END!r} marker")
    readme.write_text(f"{head}{START}\n{table()}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--write", action="store_true", help=f"replace the table in {README.name}")
    args = p.parse_args(argv)
    if args.write:
        write()
    else:
        print(table(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
