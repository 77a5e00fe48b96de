"""telemetry: the worker with OpenTelemetry's SDK configured against the
same worker without, in one run (issue 12).

Atomic at concurrency 1 and staged at concurrency 10, each drained twice
back to back on fresh databases of the same N no-op jobs: once with no SDK
(queuert's instrumentation finds no provider and builds nothing), once with
the SDK's TracerProvider (BatchSpanProcessor) and MeterProvider (periodic
reader) exporting to exporters that drop everything, so the cost measured
is queuert's spans and metrics and the SDK's processing, not a network. The
figure of interest is the ratio with/without (target: at least 0.9x).
"""

from __future__ import annotations

from .common import Databases, Results, Sizes
from .processing import _create, _drain, _status_counts

_RUNS = (("atomic", 1), ("staged", 10))


def run(dbs: Databases, sizes: Sizes, results: Results) -> None:
    for mode, concurrency in _RUNS:
        n = sizes.process_atomic_c1_n if mode == "atomic" else sizes.process_n
        rates = {}
        for variant in ("without", "with SDK"):
            env = {"QUEUERT_BENCH_OTEL": "1" if variant == "with SDK" else ""}
            with dbs.fresh(f"telemetry-{mode}-{variant.replace(' ', '-')}") as dsn:
                _create(dsn, [{"type_name": "bench", "input": {"n": i}} for i in range(n)])
                seconds, done = _drain(dsn, mode, concurrency, "noop", sizes.drain_cap_s, n, env=env)
                counts = _status_counts(dsn)
                if done is None:
                    assert counts == {"completed": n}, counts
            rates[variant] = (n if done is None else done) / seconds
            results.add("telemetry", f"{mode} c{concurrency}, {variant}", rates[variant], "jobs/s")
        results.add(
            "telemetry",
            f"{mode} c{concurrency}, ratio with/without",
            rates["with SDK"] / rates["without"],
            "x",
        )
    results.note(
        "telemetry",
        "no-op jobs; 'with SDK': TracerProvider + BatchSpanProcessor and MeterProvider + "
        "PeriodicExportingMetricReader, both exporting to exporters that drop everything",
    )
