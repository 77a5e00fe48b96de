"""Workload worker-memory (issue 16, item 6): the worker process's resident
memory.

- in flight: 10,000 pre-created jobs whose handler awaits 5 ms, so every
  slot holds a job and the claim-ahead buffer stays full, drained by one
  worker process (staged, default options) at concurrency 10 and 100: the
  process's peak RSS (the kernel's VmHWM, read by the process itself when
  its counters say the last acknowledgement committed) and its RSS once
  imported and built, before it started.
- long drain: 100,000 pre-created no-op jobs at concurrency 10; the process
  prints its RSS each time another 10,000 acknowledgements committed.
  Reported: RSS at the first 10,000 (warm: connections, plans, buffers made),
  at the end, the peak, and end minus start (must not grow).

The RSS is read by the worker process from /proc/self/status, so the
harness neither polls the database nor the process while it runs.
"""

from __future__ import annotations

import threading

from .common import Databases, Results, Sizes
from .processing import WorkerProcess, _create, _status_counts

NAME = "worker-memory"


def _run(
    dsn: str, concurrency: int, kind: str, n: int, every: int, cap: float
) -> tuple[int, list[tuple[int, int]], int, int]:
    """Drains n jobs; returns (RSS before start, [(acks, RSS)] progress
    samples, RSS at the end, peak RSS), all in KiB."""
    worker = WorkerProcess(
        dsn, "staged", concurrency, kind, expect=n, env={"QUEUERT_BENCH_PROGRESS": str(every)}
    )
    out = worker.proc.stdout
    assert out is not None
    samples: list[tuple[int, int]] = []
    # lines are read blocking (a select() on the pipe would miss lines
    # already in the reader's buffer); the cap stops the worker instead
    timer = threading.Timer(cap, worker.stop)
    try:
        worker.go()
        timer.start()
        for line in out:
            if line.startswith("progress "):
                _, acks, rss = line.split()
                samples.append((int(acks), int(rss)))
            elif line.startswith("done "):
                _, _, end, peak = line.split()[:4]  # then the worker CPU (telemetry.py reads it)
                return worker.ready_rss_kib, samples, int(end), int(peak)
        raise TimeoutError(
            f"{n} jobs not drained in {cap:.0f}s at concurrency {concurrency} "
            f"(worker exit code {worker.proc.poll()})"
        )
    finally:
        timer.cancel()
        worker.stop()


def _mib(kib: int) -> float:
    return kib / 1024


def run_all(dbs: Databases, sizes: Sizes, results: Results) -> None:
    n = sizes.memory_inflight_n
    for _ in range(sizes.memory_reps):
        for c in (10, 100):
            with dbs.fresh(f"memory-{c}") as dsn:
                _create(dsn, [{"type_name": "bench", "input": {"n": i}} for i in range(n)])
                before, _, _, peak = _run(dsn, c, "sleep", n, 0, sizes.drain_cap_s)
                assert _status_counts(dsn) == {"completed": n}
            results.add(NAME, f"concurrency {c}, jobs in flight: peak RSS", _mib(peak), "MiB", False)
            results.add(NAME, f"concurrency {c}: RSS before start", _mib(before), "MiB", False)
    results.note(
        NAME,
        f"jobs in flight: {n:,} jobs whose handler awaits 5 ms (every slot busy, claim-ahead"
        " full), staged, default options; peak = the process's VmHWM after the last"
        " acknowledgement; before start = imported and Worker built",
    )
    long_n, every = sizes.memory_drain_n, sizes.memory_drain_n // 10
    with dbs.fresh("memory-drain") as dsn:
        _create(dsn, [{"type_name": "bench", "input": {"n": i}} for i in range(long_n)])
        _, samples, end, peak = _run(dsn, 10, "noop", long_n, every, sizes.drain_cap_s * 2)
        assert _status_counts(dsn) == {"completed": long_n}
    assert samples, "no progress reported"
    start = samples[0][1]
    label = "long drain, concurrency 10"
    results.add(NAME, f"{label}: RSS after the first tenth", _mib(start), "MiB", False)
    results.add(NAME, f"{label}: RSS at the end", _mib(end), "MiB", False)
    results.add(NAME, f"{label}: peak RSS", _mib(peak), "MiB", False)
    results.add(NAME, f"{label}: growth, end - first tenth", _mib(end - start), "MiB", False)
    results.note(
        NAME,
        f"{label}: {long_n:,} no-op jobs; RSS every {every:,} acknowledgements (MiB): "
        + ", ".join(f"{_mib(r):.1f}" for _, r in samples),
    )
