"""telemetry: the worker with OpenTelemetry's SDK configured against the
same worker without, in one run (issue 12).

Atomic at concurrency 1 and staged at concurrency 10, each drained on fresh
databases of the same N no-op jobs back to back: with no SDK (queuert's
instrumentation finds no provider and builds nothing), then with the SDK's
TracerProvider (BatchSpanProcessor, default sampler: every trace) and
MeterProvider (periodic reader), both exporting to exporters that drop
everything, so the cost measured is queuert's spans and metrics and the
SDK's own processing, not a network. Staged c10 also runs two cheaper
settings: the SDK with the sampler ParentBased(TraceIdRatioBased(0.01)),
and metrics only (``QUEUERT_TELEMETRY=metrics``). A last pair runs staged
c10 with a handler that does 1 ms of work (CPU time: ``work1ms`` in
worker_proc.py) on a tenth as many jobs, with and without the SDK: the
share of the telemetry's fixed cost per attempt for a handler that does
something. Each ratio is with/without of the same repetition (target: at
least 0.9x for the default setting). Atomic c1, the judged pair, runs
``telemetry_atomic_pairs`` pairs a repetition, its drains alternating
(without, with, with, without: ABBA): its ratio is taken per pair and the
row is the median over the run's pairs, so the machine's drift within a
repetition (commit latency moves by more than the 10% margin between two
drains seconds apart) does not decide it. Every drain also reports the worker
process's CPU time per job (all its threads), a figure the machine's load
moves far less than a rate. Last, ``benchmarks.telemetry_cost`` measures in
a process of its own what one attempt's telemetry costs, queuert's calls
against the same SDK calls made directly (the SDK's own share).
"""

from __future__ import annotations

import json
import subprocess
import sys

from .common import Databases, Results, Sizes
from .processing import ROOT, _create, _drain, _status_counts

_WITHOUT = {"QUEUERT_BENCH_OTEL": ""}
_SDK = {"QUEUERT_BENCH_OTEL": "1"}
_SAMPLED = {"QUEUERT_BENCH_OTEL": "1", "QUEUERT_BENCH_OTEL_SAMPLE": "0.01"}
_METRICS = {"QUEUERT_BENCH_OTEL": "1", "QUEUERT_TELEMETRY": "metrics"}

# (mode, concurrency, handler kind, label suffix, variants)
_RUNS = (
    ("atomic", 1, "noop", "", {"without": _WITHOUT, "with SDK": _SDK}),
    (
        "staged",
        10,
        "noop",
        "",
        {"without": _WITHOUT, "with SDK": _SDK, "with SDK, 1% of traces sampled": _SAMPLED, "with SDK, metrics only": _METRICS},
    ),
    ("staged", 10, "work1ms", ", 1 ms handler", {"without": _WITHOUT, "with SDK": _SDK}),
)


def _jobs(sizes: Sizes, mode: str, kind: str) -> int:
    if mode == "atomic":
        return sizes.telemetry_atomic_n
    # a 1 ms handler runs about 1,000 jobs/s
    return sizes.telemetry_work_n if kind == "work1ms" else sizes.telemetry_staged_n


def _order(variants: dict[str, dict[str, str]], pairs: int, rep: int) -> list[tuple[int, str]]:
    """(pair, variant) in the order the drains run. One pair: each variant
    once, as listed. More (atomic c1): "without" and "with SDK" alternate
    ABBA (BAAB in odd repetitions), so a drift of the machine's speed
    during a repetition (its commit latency moves by more than the margin
    within minutes) falls on both sides of the pairs alike."""
    names = list(variants)
    if pairs == 1:
        return [(0, v) for v in names]
    order = []
    for p in range(pairs):
        pair = names if (p + rep) % 2 == 0 else names[::-1]
        order += [(p, v) for v in pair]
    return order


def run(dbs: Databases, sizes: Sizes, results: Results) -> None:
    noop_staged_cpu: float | None = None  # us per job, staged c10 no-op without telemetry
    for mode, concurrency, kind, suffix, variants in _RUNS:
        n = _jobs(sizes, mode, kind)
        label = f"{mode} c{concurrency}{suffix}"
        pairs = sizes.telemetry_atomic_pairs if mode == "atomic" else 1
        done_before = results.get("telemetry", f"{label}, without")
        rep = len(done_before.values) // pairs if done_before is not None else 0
        rates: list[dict[str, float]] = [{} for _ in range(pairs)]
        cpu_us: list[dict[str, float]] = [{} for _ in range(pairs)]
        for pair, variant in _order(variants, pairs, rep):
            env = variants[variant]
            with dbs.fresh(f"telemetry-{mode}") as dsn:
                _create(dsn, [{"type_name": "bench", "input": {"n": i}} for i in range(n)])
                cpu: list[float] = []
                seconds, done = _drain(dsn, mode, concurrency, kind, sizes.drain_cap_s, n, env=env, cpu=cpu)
                counts = _status_counts(dsn)
                if done is None:
                    assert counts == {"completed": n}, counts
                else:
                    assert counts.get("running", 0) == 0 and sum(counts.values()) == n, counts
                    results.note("telemetry", f"{label}, {variant}: CAPPED in some runs")
            rates[pair][variant] = (n if done is None else done) / seconds
            results.add("telemetry", f"{label}, {variant}", rates[pair][variant], "jobs/s")
            if cpu:
                cpu_us[pair][variant] = cpu[0] / n * 1e6
                results.add(
                    "telemetry",
                    f"{label}, worker CPU per job, {variant}",
                    cpu_us[pair][variant],
                    "us",
                    higher_is_better=False,
                )
        if mode == "staged" and kind == "noop" and "without" in cpu_us[0]:
            noop_staged_cpu = cpu_us[0]["without"]
        # one ratio per pair (the row's figure is the median over the run's pairs)
        for pair in range(pairs):
            for variant in variants:
                if variant == "without":
                    continue
                results.add(
                    "telemetry",
                    f"{label}, ratio {variant} / without",
                    rates[pair][variant] / rates[pair]["without"],
                    "x",
                )
                if variant in cpu_us[pair] and "without" in cpu_us[pair]:
                    results.add(
                        "telemetry",
                        f"{label}, telemetry CPU per job, {variant}",
                        cpu_us[pair][variant] - cpu_us[pair]["without"],
                        "us",
                        higher_is_better=False,
                    )
    if sizes.telemetry_atomic_pairs > 1:
        results.note(
            "telemetry",
            f"atomic c1: {sizes.telemetry_atomic_pairs} pairs a repetition, drains alternating ABBA; "
            "its ratio and telemetry CPU rows: one value per pair, median over the run's pairs",
        )
    sdk_us = _attempt_cost(sizes, results)
    if noop_staged_cpu is not None:
        # the budget: a no-op job's worker CPU against the SDK's own calls
        # for one attempt (queuert's own work taken as zero): the most that
        # a CPU-bound worker could keep with a span per attempt
        results.add(
            "telemetry",
            "staged c10, CPU-bound ceiling: no-op job / (no-op job + the SDK's own calls)",
            noop_staged_cpu / (noop_staged_cpu + sdk_us),
            "x",
        )
    results.note(
        "telemetry",
        "no-op jobs (the 1 ms handler: 1 ms of CPU time per job); 'with SDK': TracerProvider + BatchSpanProcessor and MeterProvider + "
        "PeriodicExportingMetricReader, both exporting to exporters that drop everything",
    )


def _attempt_cost(sizes: Sizes, results: Results) -> float:
    """One attempt's telemetry in CPU microseconds, queuert's calls against
    the SDK's own (benchmarks/telemetry_cost.py, in a process of its own:
    it installs the global providers); returns the SDK's own."""
    n = sizes.telemetry_cost_n
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.telemetry_cost", str(n)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    cost = json.loads(out.stdout.strip().splitlines()[-1])
    for key, label in (
        ("queuert", "per attempt, all of it"),
        ("sdk", "per attempt, the SDK's own calls"),
        ("queuert_own", "per attempt, queuert's own work"),
        ("off", "per attempt, no SDK configured"),
    ):
        results.add("telemetry", f"in-process CPU {label}", cost[key], "us", higher_is_better=False)
    return float(cost["sdk"])
