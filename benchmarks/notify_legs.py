"""Where a notifier's wake-up delivery spends its time, without the claim
(not in ``make bench``): ``python -m benchmarks.notify_legs [N] [kinds]``.

A listener process of its own (``--listen``) subscribes with one notifier
(``postgres``: a plain ``LISTEN`` connection; ``redis``, ``nats``: a broker
notifier) and records, per event, when the notifier's thread handed it out
(``BrokerNotifier._dispatch_here`` on the listener's loop since the
subscription is read there, ``_dispatch`` on the notifier's I/O thread
before) and when the listener's loop ran its callback; the producer commits one transaction per event, 20 ms apart, and
publishes right after commit the way ``transaction_hooks`` does
(``publish_nowait``; ``pg_notify`` inside the transaction for LISTEN). All
times CLOCK_MONOTONIC. Printed: commit -> notifier thread, thread -> loop,
commit -> loop, p50 and p99 in ms, and the listener process's voluntary
context switches per event (all its threads, from subscribed to the last
event: every thread that sleeps and wakes for an event counts one; a
figure the machine's load barely moves, unlike the times). Needs the Redis and NATS of
``scripts/ensure-services.sh``.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import psycopg

from .common import DEFAULT_DSN

CHANNEL = "queuert_bench_legs"


def _url(kind: str, prefix: str) -> str:
    return {
        "postgres": DEFAULT_DSN,
        "redis": f"redis://127.0.0.1:6379/0?prefix={prefix}",
        "nats": f"nats://127.0.0.1:4222?prefix={prefix}",
    }[kind]


def _switches() -> int:
    """Voluntary context switches of this process so far, all threads (each
    blocking wait a thread wakes from counts one; preemptions, which the
    load decides, do not)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw


async def _listen(kind: str, url: str, out: str) -> None:
    rec: list[tuple[str, float, float]] = []
    switches = 0
    if kind == "postgres":
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        await conn.execute(f"LISTEN {CHANNEL}")
        print("ready", flush=True)
        switches = _switches()
        async for n in conn.notifies():
            t = time.monotonic()
            rec.append((n.payload, t, t))
            if n.payload == "end":
                break
        switches = _switches() - switches
        await conn.close()
    else:
        from queuert.notify import NotifyEvent, notifier_from_url
        from queuert.notify.broker import BrokerNotifier

        handed: dict[str, float] = {}
        # where the subscription hands an event out: on the listener's loop
        # (_dispatch_here), or before the Fifth pass on the notifier's thread
        point = "_dispatch_here" if hasattr(BrokerNotifier, "_dispatch_here") else "_dispatch"
        dispatch = getattr(BrokerNotifier, point)

        def spy(self: BrokerNotifier, *args: Any) -> None:
            handed.setdefault(args[-1].payload, time.monotonic())
            dispatch(self, *args)

        setattr(BrokerNotifier, point, spy)
        notifier = notifier_from_url(url)
        done = asyncio.Event()

        def on_event(event: NotifyEvent) -> None:
            if event.kind == "job_ready":
                t = time.monotonic()
                rec.append((event.payload, handed.get(event.payload, t), t))
                if event.payload == "end":
                    done.set()

        await notifier.subscribe(on_event, kinds=("job_ready",))
        print("ready", flush=True)
        switches = _switches()
        await done.wait()
        switches = _switches() - switches
        await notifier.close()
    with open(out, "w") as f:
        f.write(f"switches {switches} 0\n")
        f.writelines(f"{p} {a} {b}\n" for p, a, b in rec)


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def measure(kind: str, n: int) -> str:
    from queuert.notify import notifier_from_url

    prefix = f"benchlegs{os.getpid()}{kind}"
    url = _url(kind, prefix)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rec")
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.notify_legs", "--listen", kind, url, out],
            stdout=subprocess.PIPE, text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        time.sleep(1.5)  # a broker listener counts itself alone meanwhile
        notifier: Any = None if kind == "postgres" else notifier_from_url(url)
        sent: dict[str, float] = {}
        with psycopg.connect(DEFAULT_DSN, autocommit=True) as conn:
            for i in [*range(-10, n), "end"]:
                with conn.transaction():
                    if kind == "postgres":
                        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(i)))
                    else:
                        conn.execute("SELECT 1")
                sent[str(i)] = time.monotonic()
                if notifier is not None:
                    notifier.publish_nowait({str(i): 1}, [], [])
                time.sleep(0.02)
        proc.wait(30)
        if notifier is not None:
            asyncio.run(notifier.close())
        rows = [line.split() for line in open(out)]
    if kind == "nats":
        from .brokers import drop_nats_bucket

        asyncio.run(drop_nats_bucket(f"{prefix}-wake-hints"))
    switches = int(rows[0][1])  # from "ready" to "end", warm-up included
    rows = rows[1:]
    kept = [(k, float(a), float(b)) for k, a, b in rows if k != "end" and int(k) >= 0]
    thread = [(a - sent[k]) * 1000 for k, a, _ in kept]
    hop = [(b - a) * 1000 for _, a, b in kept]
    loop = [(b - sent[k]) * 1000 for k, _, b in kept]
    return (
        f"{kind:8s} n={len(kept)}  commit -> notifier thread p50 {_pct(thread, 50):.2f} p99 {_pct(thread, 99):.2f}"
        f" | thread -> loop p50 {_pct(hop, 50):.2f} p99 {_pct(hop, 99):.2f}"
        f" | commit -> loop p50 {_pct(loop, 50):.2f} p99 {_pct(loop, 99):.2f} ms"
        f" | listener's voluntary context switches per event {switches / len(rows):.1f}"
    )


def main() -> None:
    if sys.argv[1:2] == ["--listen"]:
        asyncio.run(_listen(*sys.argv[2:5]))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    for kind in (sys.argv[2] if len(sys.argv) > 2 else "postgres,redis,nats").split(","):
        print(measure(kind, n), flush=True)


if __name__ == "__main__":
    main()
