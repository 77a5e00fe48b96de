"""The worker process the processing benchmarks drive.

    python -m benchmarks.worker_proc DSN MODE CONCURRENCY KIND [TIMES_FILE]

Imports everything and builds the Worker, prints "ready <RSS KiB>", then waits for one
line on stdin before calling Worker.run(), so interpreter start-up and
imports are not timed but connecting and everything after is. Stops on
SIGTERM (the Worker's own graceful shutdown).

KIND: "noop" (one no-op handler for type "bench"), "sleep" (a handler for
type "bench" that awaits 5 ms, so every slot holds a job), "work1ms" (a
handler for type "bench" that computes for 1 ms of CPU time: a handler doing
real work, as in benchmarks/telemetry.py), "chain3" (step1 and
step2 continue, step3 returns an output), "wakeup" (no-op that records the
CLOCK_MONOTONIC time it started, with the job's input "i", to TIMES_FILE).

Environment: QUEUERT_BENCH_PREFETCH (the worker's prefetch: "auto", the
Worker's default, or a number; 0 claims only the free slots);
QUEUERT_BENCH_PREFETCH_WINDOW / QUEUERT_BENCH_PREFETCH_MAX (the Worker's
prefetch_window / prefetch_max, when set);
QUEUERT_BENCH_BATCH_NOTIFICATIONS=0 turns the worker's batched notifications
off (for comparison runs);
QUEUERT_BENCH_NOTIFY=URL gives the worker the notifier
``queuert.notify.notifier_from_url(URL)`` names (``queuert worker --notify``);
QUEUERT_BENCH_WAKE_BUDGETS=0 makes that notifier's wake-ups skip the budget
(every job_ready claims at once, as without budgets: for comparison runs);
QUEUERT_BENCH_COALESCE=S sets the publisher's ``coalesce`` (seconds between
announcements of completed chains alone; 0 = one after each 2 ms linger).
QUEUERT_BENCH_PREPARE_THRESHOLD=none turns server-side prepared statements
off (PgBouncer in transaction mode);
QUEUERT_BENCH_OTEL=1 configures OpenTelemetry's SDK (tracer and meter
providers) with exporters that drop everything (benchmarks/telemetry.py);
QUEUERT_BENCH_OTEL_SAMPLE=R gives its tracer provider the sampler
ParentBased(TraceIdRatioBased(R)) instead of the default (every trace);
QUEUERT_BENCH_WAKE_TRACE=FILE marks the wake path's points (a job_ready
heard, a claim sent, its rows back) and writes them to FILE at exit
(benchmarks/wakeup_trace.py);
QUEUERT_BENCH_PROFILE=FILE writes a cProfile of the run to FILE (with
QUEUERT_BENCH_PROFILE_CPU=1 timed by the loop thread's CPU time);
QUEUERT_BENCH_EXPECT=N makes the process print "done <CLOCK_MONOTONIC> <RSS
KiB> <peak RSS KiB> <CPU seconds>" (the CPU time the whole process used, all
threads, since "go") once
its own counters say N acknowledgements (completed + continued) committed, so
the harness need not poll the database while the worker runs;
QUEUERT_BENCH_PROGRESS=K (with EXPECT) also prints "progress <acks> <RSS KiB>"
each time another K acknowledgements committed (the process's resident
memory from /proc/self/status, for benchmarks/memory.py).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from typing import Any

import queuert.worker as qw


def build(dsn: str, mode: str, concurrency: int, kind: str, times_file: str | None) -> qw.Worker:
    raw = os.environ.get("QUEUERT_BENCH_PREFETCH", "auto")
    prefetch: Any = raw if raw == "auto" else int(raw)
    batch = os.environ.get("QUEUERT_BENCH_BATCH_NOTIFICATIONS", "1") != "0"
    extra: dict[str, Any] = {}
    if os.environ.get("QUEUERT_BENCH_PREFETCH_WINDOW"):
        extra["prefetch_window"] = float(os.environ["QUEUERT_BENCH_PREFETCH_WINDOW"])
    if os.environ.get("QUEUERT_BENCH_PREFETCH_MAX"):
        extra["prefetch_max"] = int(os.environ["QUEUERT_BENCH_PREFETCH_MAX"])
    notify = os.environ.get("QUEUERT_BENCH_NOTIFY")
    if notify:
        from queuert.notify import notifier_from_url

        extra["notifier"] = notifier_from_url(notify, conninfo=dsn)
        if os.environ.get("QUEUERT_BENCH_WAKE_BUDGETS") == "0":
            extra["notifier"].wake_budgets = False
    if os.environ.get("QUEUERT_BENCH_PREPARE_THRESHOLD") == "none":
        extra["prepare_threshold"] = None
    if os.environ.get("QUEUERT_BENCH_COALESCE"):
        # the publisher's wait between announcements of completed chains
        # alone (0: each after its 2 ms linger, as before issue 16 item 5)
        from queuert._worker.publisher import Publisher

        Publisher.coalesce = float(os.environ["QUEUERT_BENCH_COALESCE"])
    worker = qw.Worker(
        dsn,
        mode=mode,  # type: ignore[arg-type]
        concurrency=concurrency,
        prefetch=prefetch,
        batch_notifications=batch,
        **extra,
    )
    if kind == "noop":

        async def noop(job: Any) -> None:
            return None

        worker.handler("bench", noop)
    elif kind == "sleep":

        async def nap(job: Any) -> None:
            await asyncio.sleep(0.005)

        worker.handler("bench", nap)
    elif kind == "work1ms":

        async def work(job: Any) -> None:
            until = time.thread_time() + 0.001  # this thread's CPU time, not the clock
            while time.thread_time() < until:
                pass

        worker.handler("bench", work)
    elif kind == "chain3":

        async def step1(job: Any) -> Any:
            return job.continue_with("step2", {"n": job.input["n"]})

        async def step2(job: Any) -> Any:
            return job.continue_with("step3", {"n": job.input["n"]})

        async def step3(job: Any) -> Any:
            return {"done": job.input["n"]}

        worker.handler("step1", step1)
        worker.handler("step2", step2)
        worker.handler("step3", step3)
    elif kind == "wakeup":
        assert times_file is not None
        out = open(times_file, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

        async def record(job: Any) -> None:
            t = time.monotonic()
            out.write(f"{job.input['i']} {t!r}\n")

        worker.handler("wake", record)
    else:
        raise SystemExit(f"unknown kind {kind}")
    return worker


def _install_otel_sdk() -> None:
    """SDK providers whose exporters drop everything: the instrumentation's
    and the SDK's own cost, no network."""
    from collections.abc import Sequence

    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class DropSpans(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class DropMetrics(MetricExporter):
        def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            pass

    ratio = os.environ.get("QUEUERT_BENCH_OTEL_SAMPLE")
    if ratio:
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(float(ratio))))
    else:
        provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DropSpans()))
    trace.set_tracer_provider(provider)
    reader = PeriodicExportingMetricReader(DropMetrics(), export_interval_millis=5_000)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


def rss_kib(field: str = "VmRSS") -> int:
    """This process's resident memory (VmRSS) or its peak (VmHWM), in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> None:
    if os.environ.get("QUEUERT_BENCH_OTEL") == "1":
        _install_otel_sdk()
    if os.environ.get("QUEUERT_BENCH_WAKE_TRACE"):
        from benchmarks import wakeup_trace

        wakeup_trace.install(os.environ["QUEUERT_BENCH_WAKE_TRACE"])
    dsn, mode, concurrency, kind = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    times_file = sys.argv[5] if len(sys.argv) > 5 else None
    worker = build(dsn, mode, concurrency, kind, times_file)
    print(f"ready {rss_kib()}", flush=True)
    sys.stdin.readline()
    cpu_at_go = time.process_time()
    expect = int(os.environ.get("QUEUERT_BENCH_EXPECT", "0"))
    if expect:

        every = int(os.environ.get("QUEUERT_BENCH_PROGRESS", "0"))

        def report() -> None:
            stats = worker.stats
            next_mark = every
            while True:
                acks = stats.completed + stats.continued
                if every and acks >= next_mark:
                    print(f"progress {acks} {rss_kib()}", flush=True)
                    next_mark += every
                if acks >= expect:
                    break
                time.sleep(0.002)
            cpu = time.process_time() - cpu_at_go
            print(f"done {time.monotonic()!r} {rss_kib()} {rss_kib('VmHWM')} {cpu!r}", flush=True)

        threading.Thread(target=report, daemon=True).start()
    profile = os.environ.get("QUEUERT_BENCH_PROFILE")
    if profile:  # cProfile the worker run, for the README's profiling notes
        import cProfile

        # QUEUERT_BENCH_PROFILE_CPU=1: the loop thread's CPU time, not the
        # clock (a send that wakes the backend is charged its CPU, not the
        # time the worker waits to be scheduled again)
        timer = time.thread_time if os.environ.get("QUEUERT_BENCH_PROFILE_CPU") == "1" else time.perf_counter
        prof = cProfile.Profile(timer)
        prof.runctx("worker.run(handle_signals=True)", globals(), locals())
        prof.dump_stats(profile)
    else:
        worker.run(handle_signals=True)


if __name__ == "__main__":
    main()
