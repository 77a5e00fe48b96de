"""Where a wake-up's time goes (issue 16 item 4): the wake-up workload's
worker process marks three points of the wake path, and the harness splits
each latency (producer's COMMIT returned -> handler's first line) into

- ``NOTIFY delivery``: COMMIT returned -> the worker's LISTEN connection
  yielded the job_ready notification (the server signals the listening
  backend, which sends it; the socket wakes the worker's event loop);
- ``worker wake path``: notification -> claim sent (through the loop to the
  subscriber, the hint, the staged dispatcher, a flush lane);
- ``claim round trip``: claim sent -> claimed rows back (one statement,
  ``queuert.claim`` and the COMMIT of its transaction, which waits for the
  WAL flush);
- ``to the handler``: rows back -> handler's first line (job objects, a
  slot, the handler called).

The points are taken by wrapping three methods of the worker's internals in
the worker process (``install``, when ``QUEUERT_BENCH_WAKE_TRACE`` names a
file): CLOCK_MONOTONIC appended to a list, written out when the process
ends, so the run pays a clock read per point and no I/O.
"""

from __future__ import annotations

import atexit
import statistics
import time
from typing import Any

#: the segments, in the order they happen, ending at the mark named
SEGMENTS = (
    ("NOTIFY delivery", "heard"),
    ("worker wake path", "claim_sent"),
    ("claim round trip", "claimed"),
    ("to the handler", "handler"),
)


def install(path: str) -> None:
    """Wrap the wake path's points in this (worker) process."""
    from queuert._worker.acks import Acknowledger
    from queuert.notify.postgres import PostgresNotifier

    marks: list[tuple[str, float]] = []
    mark = marks.append
    clock = time.monotonic

    dispatch = PostgresNotifier._dispatch

    def heard(self: Any, event: Any) -> None:
        if event.kind == "job_ready":
            mark(("heard", clock()))
        dispatch(self, event)

    flush = Acknowledger.flush

    async def traced_flush(self: Any, session: Any, acks: Any, claim_n: int) -> Any:
        if not claim_n:
            return await flush(self, session, acks, claim_n)
        mark(("claim_sent", clock()))
        rows = await flush(self, session, acks, claim_n)
        if rows:
            mark(("claimed", clock()))
        return rows

    PostgresNotifier._dispatch = heard  # type: ignore[method-assign]
    # a broker's subscription hands its events out on the worker's loop
    from queuert.notify.broker import BrokerNotifier

    if hasattr(BrokerNotifier, "_dispatch_here"):
        dispatch_here = BrokerNotifier._dispatch_here

        def heard_here(self: Any, loop: Any, event: Any) -> None:
            if event.kind == "job_ready":
                mark(("heard", clock()))
            dispatch_here(self, loop, event)

        BrokerNotifier._dispatch_here = heard_here  # type: ignore[method-assign]
    Acknowledger.flush = traced_flush  # type: ignore[method-assign]

    def write() -> None:
        with open(path, "w") as f:
            f.writelines(f"{name} {t!r}\n" for name, t in marks)

    atexit.register(write)


def segments(path: str, commits: dict[int, float], handled: dict[int, float], n: int) -> dict[str, list[float]]:
    """Per segment, the milliseconds of each measured job (0 <= i < n)
    whose points were all seen between its commit and the next job's."""
    points: list[tuple[float, str]] = []
    with open(path) as f:
        for line in f:
            name, t = line.split()
            points.append((float(t), name))
    points.sort()
    order = sorted(commits.items(), key=lambda kv: kv[1])
    out: dict[str, list[float]] = {label: [] for label, _ in SEGMENTS}
    k = 0
    for idx, (i, committed) in enumerate(order):
        end = order[idx + 1][1] if idx + 1 < len(order) else float("inf")
        while k < len(points) and points[k][0] < committed:
            k += 1
        seen: dict[str, float] = {}
        j = k
        while j < len(points) and points[j][0] < end:
            seen.setdefault(points[j][1], points[j][0])
            j += 1
        if not 0 <= i < n or i not in handled:
            continue
        seen["handler"] = handled[i]
        at = [committed] + [seen.get(name, float("nan")) for _, name in SEGMENTS]
        if any(t != t for t in at) or sorted(at) != at:
            continue  # a point missing (a claim that found it early, a resync ...)
        for (label, _), a, b in zip(SEGMENTS, at, at[1:]):
            out[label].append((b - a) * 1000)
    return out


def medians(parts: dict[str, list[float]]) -> dict[str, float]:
    return {label: statistics.median(v) for label, v in parts.items() if v}

