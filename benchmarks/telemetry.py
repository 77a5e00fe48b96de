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
and metrics only (``QUEUERT_TELEMETRY=metrics``). Each ratio is with/without
of the same repetition (target: at least 0.9x for the default setting).
"""

from __future__ import annotations

from .common import Databases, Results, Sizes
from .processing import _create, _drain, _status_counts

_WITHOUT = {"QUEUERT_BENCH_OTEL": ""}
_SDK = {"QUEUERT_BENCH_OTEL": "1"}
_SAMPLED = {"QUEUERT_BENCH_OTEL": "1", "QUEUERT_BENCH_OTEL_SAMPLE": "0.01"}
_METRICS = {"QUEUERT_BENCH_OTEL": "1", "QUEUERT_TELEMETRY": "metrics"}

_RUNS = (
    ("atomic", 1, {"without": _WITHOUT, "with SDK": _SDK}),
    (
        "staged",
        10,
        {"without": _WITHOUT, "with SDK": _SDK, "with SDK, 1% of traces sampled": _SAMPLED, "with SDK, metrics only": _METRICS},
    ),
)


def run(dbs: Databases, sizes: Sizes, results: Results) -> None:
    for mode, concurrency, variants in _RUNS:
        n = sizes.process_atomic_c1_n if mode == "atomic" else sizes.process_n
        rates = {}
        for variant, env in variants.items():
            with dbs.fresh(f"telemetry-{mode}") as dsn:
                _create(dsn, [{"type_name": "bench", "input": {"n": i}} for i in range(n)])
                seconds, done = _drain(dsn, mode, concurrency, "noop", sizes.drain_cap_s, n, env=env)
                counts = _status_counts(dsn)
                if done is None:
                    assert counts == {"completed": n}, counts
                else:
                    assert counts.get("running", 0) == 0 and sum(counts.values()) == n, counts
                    results.note("telemetry", f"{mode} c{concurrency}, {variant}: CAPPED in some runs")
            rates[variant] = (n if done is None else done) / seconds
            results.add("telemetry", f"{mode} c{concurrency}, {variant}", rates[variant], "jobs/s")
        for variant in variants:
            if variant != "without":
                results.add(
                    "telemetry", f"{mode} c{concurrency}, ratio {variant} / without", rates[variant] / rates["without"], "x"
                )
    results.note(
        "telemetry",
        "no-op jobs; 'with SDK': TracerProvider + BatchSpanProcessor and MeterProvider + "
        "PeriodicExportingMetricReader, both exporting to exporters that drop everything",
    )
