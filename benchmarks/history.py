"""The spread of recent benchmark runs, per judged figure (issue 16).

    python -m benchmarks.history                # last 5 results per figure
    python -m benchmarks.history --last 8 --markdown

Reads benchmarks/results/*.json (not the -quick smoke runs), newest first,
and for every figure a run judged against a target or a floor (its "ratios":
ratios to a floor, paired ratios, limits such as the wake-up latency) takes
the last N runs that measured it. A run made with --only contributes the
figures it measured. A few figures the README quotes without a target in the
run (``EXTRA``: retention, telemetry, memory) come from the runs' metrics.
Prints, per figure: how many runs, min, median, max,
the latest value, its target and in how many of those runs the target was
met, so the README can show the range a figure moves in rather than the
best run.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

# figures the README's speed table quotes that no target or floor judges in
# the run itself (so they are not among its "ratios"): taken from the run's
# metrics, its median over the repetitions
EXTRA: list[tuple[str, str]] = [
    ("retention", "claim p99: retained / empty"),
    ("retention", "claim p50: retained / empty"),
    ("retention", "create: pruner on / off"),
    ("telemetry", "atomic c1, ratio with SDK / without"),
    ("telemetry", "staged c10, ratio with SDK / without"),
    ("telemetry", "staged c10, ratio with SDK, metrics only / without"),
    ("worker-memory", "concurrency 10, jobs in flight: peak RSS"),
    ("worker-memory", "concurrency 100, jobs in flight: peak RSS"),
    ("wake-up-notify", "LISTEN/NOTIFY p50"),
]


def _value(row: dict[str, Any]) -> float | None:
    v = row.get("ratio", row.get("value"))
    return None if v is None else float(v)


def spreads(results_dir: Path, last: int) -> list[dict[str, Any]]:
    """One entry per (workload, metric, against) over the last ``last`` runs
    that measured it, in the order of the newest run's table."""
    files = sorted(p for p in results_dir.glob("*.json") if not p.stem.endswith("-quick"))
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in reversed(files):  # newest first
        data = json.loads(path.read_text())
        extra = [
            {"workload": m["workload"], "metric": m["metric"], "floor": "", "value": m["median"]}
            for m in data.get("metrics", [])
            if (m["workload"], m["metric"]) in EXTRA
        ]
        for row in [*data.get("ratios", []), *extra]:
            value = _value(row)
            if value is None:
                continue
            against = str(row.get("floor", ""))
            if "paired" in against:  # older runs named the paired floor, newer say "paired blocks"
                against = "paired blocks"
            key = (row["workload"], row["metric"], against)
            entry = seen.setdefault(
                key,
                {"workload": key[0], "metric": key[1], "against": key[2], "values": [], "runs": [],
                 "met": [], "target": row.get("target"), "latest": value},
            )
            if len(entry["values"]) < last:
                entry["values"].append(value)
                entry["met"].append(row.get("met"))
                entry["runs"].append(data.get("started_at", path.stem))
    for entry in seen.values():
        vals = entry["values"]
        entry.update(n=len(vals), min=min(vals), median=statistics.median(vals), max=max(vals))
    return list(seen.values())


def _met(entry: dict[str, Any]) -> str:
    """"latest: met, 4 of 5" from the runs' own verdicts ("" where no
    run judged the figure)."""
    judged = [m for m in entry["met"] if m is not None]
    if not judged:
        return ""
    latest = entry["met"][0]
    head = "" if latest is None else ("met" if latest else "MISSED") + ", "
    return f"{head}{sum(judged)} of {len(judged)}"


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--last", type=int, default=5, help="runs per figure (default 5)")
    p.add_argument("--dir", default=str(RESULTS), help="directory of results JSON files")
    p.add_argument("--markdown", action="store_true", help="a markdown table")
    args = p.parse_args(argv)
    rows = spreads(Path(args.dir), args.last)
    if args.markdown:
        print("| workload | metric | against | runs | min | median | max | latest | target | met: latest, runs |")
        print("|---|---|---|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        target = "" if r["target"] is None else str(r["target"])
        cells = [r["workload"], r["metric"], r["against"], str(r["n"]), _fmt(r["min"]),
                 _fmt(r["median"]), _fmt(r["max"]), _fmt(r["latest"]), target, _met(r)]
        print(("| " + " | ".join(cells) + " |") if args.markdown else "  ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
