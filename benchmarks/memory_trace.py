"""Where a worker process's memory goes over a long drain (issue 16, item 6;
not part of make bench, a diagnosis tool for the worker-memory rows).

    python -m benchmarks.memory_trace [--jobs 100000] [--every 10000]
        [--mode staged] [--concurrency 10] [--trace 10000,40000,100000]

One worker process (benchmarks.worker_proc's build, no-op handler, default
options) drains N jobs created just before, as the worker-memory long drain
does. Every K acknowledgements the process prints, from a thread of its own:

- rss: its VmRSS;
- heap: the RSS of ``[heap]``, glibc's main arena (the loop thread's
  malloc: Python objects over 512 bytes, libpq's buffers and results);
- anon: the RSS of the other anonymous mappings (pymalloc's 1 MiB arenas,
  glibc's per-thread arenas, large blocks mmap'd alone);
- inuse / free: glibc's main-arena bytes in use and free (mallinfo2);
- pyarenas: pymalloc arenas allocated (sys._debugmallocstats);
- tallies: per psycopg connection, how many statement texts its prepared
  statement manager keeps counting and their size in KiB (psycopg's private
  state, read for diagnosis only): it counts every single-statement text a
  connection runs, ``prepare=False`` or not, and keeps the last 100.

``--trace`` turns tracemalloc on (25 frames) and takes a snapshot at each
given mark; at the end it prints the growth from the first snapshot to each
later one (compare_to, by line) and the traceback of the biggest. tracemalloc
sees Python's allocations only, and costs memory itself: compare its totals
with each other and with ``inuse``, not with an untraced run's RSS.

The reporting thread allocates too (reading /proc/self/smaps each mark):
that lands in a glibc thread arena, a few hundred KiB of ``anon``, which the
benchmark's own reporter (one /proc/self/status read) does not cost; the
worker's loop is ``heap`` and ``inuse``.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")
    ]


def _pymalloc_arenas() -> int:
    """Arenas pymalloc holds now (sys._debugmallocstats writes to the C
    stderr, so fd 2 goes to a file meanwhile)."""
    with tempfile.TemporaryFile("w+") as f:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read()
    for line in text.splitlines():
        if line.startswith("# arenas allocated current"):
            return int(line.split("=")[1].replace(",", ""))
    return -1


def _smaps_rss() -> tuple[int, int]:
    """(RSS of [heap], RSS of the other anonymous mappings), KiB."""
    heap = anon = 0
    name = ""
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if parts and "-" in parts[0] and not parts[0].endswith(":"):
                name = parts[5] if len(parts) > 5 else ""
            elif parts and parts[0] == "Rss:":
                if name == "[heap]":
                    heap += int(parts[1])
                elif name == "":
                    anon += int(parts[1])
    return heap, anon


def _tallies() -> list[tuple[int, int]]:
    import gc

    from psycopg._preparing import PrepareManager  # private: diagnosis only

    return [
        (len(o._counts), sum(len(key[0]) for key in o._counts) >> 10)
        for o in gc.get_objects()
        if isinstance(o, PrepareManager)
    ]


def _child(dsn: str, mode: str, concurrency: int, jobs: int, every: int, marks: list[int], out: str) -> None:
    if marks:
        tracemalloc.start(25)
    from benchmarks.worker_proc import build, rss_kib

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    worker = build(dsn, mode, concurrency, "noop", None)

    def report() -> None:
        next_mark = every
        while True:
            acks = worker.stats.completed + worker.stats.continued
            if acks >= next_mark:
                info = libc.mallinfo2()
                heap, anon = _smaps_rss()
                print(f"{acks:>8} rss {rss_kib():>6} heap {heap:>6} anon {anon:>6} inuse {info.uordblks >> 10:>6}"
                      f" free {info.fordblks >> 10:>5} pyarenas {_pymalloc_arenas()} tallies {_tallies()}",
                      flush=True)
                if next_mark in marks:
                    tracemalloc.take_snapshot().dump(f"{out}/snapshot_{next_mark}.tm")
                next_mark += every
            if acks >= jobs:
                break
            time.sleep(0.002)
        os.kill(os.getpid(), signal.SIGTERM)  # the worker's graceful stop, as the harness does

    threading.Thread(target=report, daemon=True).start()
    print("     acks (KiB)", flush=True)
    worker.run(handle_signals=True)


def _compare(out: str, marks: list[int]) -> None:
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib*")]
    first = tracemalloc.Snapshot.load(f"{out}/snapshot_{marks[0]}.tm").filter_traces(ignore)
    for mark in marks[1:]:
        later = tracemalloc.Snapshot.load(f"{out}/snapshot_{mark}.tm").filter_traces(ignore)
        stats = later.compare_to(first, "lineno")
        print(f"\ntracemalloc, {marks[0]:,} -> {mark:,} jobs: {sum(s.size_diff for s in stats) / 1024:+.0f} KiB")
        for s in stats[:8]:
            print(f"  {s.size_diff / 1024:+8.1f} KiB {s.count_diff:+6d} blocks  {s.traceback}")
    grown = max(later.compare_to(first, "traceback"), key=lambda s: s.size_diff)
    print(f"\nthe biggest growth ({grown.size_diff / 1024:+.0f} KiB, {grown.count_diff:+d} blocks), where it was made:\n  "
          + "\n  ".join(grown.traceback.format()[-16:]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsn", default=os.environ.get("QUEUERT_BENCH_DSN", "host=127.0.0.1 user=postgres dbname=postgres"))
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--every", type=int, default=10_000)
    p.add_argument("--mode", default="staged", choices=("staged", "atomic"))
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--trace", default="", help="comma-separated marks for tracemalloc snapshots")
    p.add_argument("--out", default="/tmp/memory_trace")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)  # the worker process: its DSN
    args = p.parse_args(argv)
    marks = [int(m) for m in args.trace.split(",") if m]
    if args.child:
        _child(args.child, args.mode, args.concurrency, args.jobs, args.every, marks, args.out)
        return 0
    from .common import Databases
    from .processing import _create, _status_counts

    os.makedirs(args.out, exist_ok=True)
    dbs = Databases(args.dsn)
    try:
        with dbs.fresh("memory-trace") as dsn:
            _create(dsn, [{"type_name": "bench", "input": {"n": i}} for i in range(args.jobs)])
            env: dict[str, Any] = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
            subprocess.run([sys.executable, "-m", "benchmarks.memory_trace", *(argv or sys.argv[1:]), "--child", dsn],
                           cwd=ROOT, env=env, check=True)
            assert _status_counts(dsn) == {"completed": args.jobs}
    finally:
        dbs.close()
    if len(marks) > 1:
        _compare(args.out, marks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
