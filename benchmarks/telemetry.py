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
least 0.9x for the default setting). Every drain also reports the worker
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


def run(dbs: Databases, sizes: Sizes, results: Results) -> None:
    noop_staged_cpu: float | None = None  # us per job, staged c10 no-op without telemetry
    for mode, concurrency, kind, suffix, variants in _RUNS:
        n = _jobs(sizes, mode, kind)
        rates = {}
        cpu_us: dict[str, float] = {}
        for variant, env in variants.items():
            with dbs.fresh(f"telemetry-{mode}") as dsn:
                _create(dsn, [{"type_name": "bench", "input": {"n": i}} for i in range(n)])
                cpu: list[float] = []
                seconds, done = _drain(dsn, mode, concurrency, kind, sizes.drain_cap_s, n, env=env, cpu=cpu)
                counts = _status_counts(dsn)
                if done is None:
                    assert counts == {"completed": n}, counts
                else:
                    assert counts.get("running", 0) == 0 and sum(counts.values()) == n, counts
                    results.note("telemetry", f"{mode} c{concurrency}{suffix}, {variant}: CAPPED in some runs")
            rates[variant] = (n if done is None else done) / seconds
            results.add("telemetry", f"{mode} c{concurrency}{suffix}, {variant}", rates[variant], "jobs/s")
            if cpu:
                cpu_us[variant] = cpu[0] / n * 1e6
                results.add(
                    "telemetry",
                    f"{mode} c{concurrency}{suffix}, worker CPU per job, {variant}",
                    cpu_us[variant],
                    "us",
                    higher_is_better=False,
                )
        if mode == "staged" and kind == "noop" and "without" in cpu_us:
            noop_staged_cpu = cpu_us["without"]
        for variant in variants:
            if variant != "without":
                results.add(
                    "telemetry",
                    f"{mode} c{concurrency}{suffix}, ratio {variant} / without",
                    rates[variant] / rates["without"],
                    "x",
                )
                if variant in cpu_us and "without" in cpu_us:
                    results.add(
                        "telemetry",
                        f"{mode} c{concurrency}{suffix}, telemetry CPU per job, {variant}",
                        cpu_us[variant] - cpu_us["without"],
                        "us",
                        higher_is_better=False,
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
