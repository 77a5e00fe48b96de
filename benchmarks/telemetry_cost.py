"""What one attempt's telemetry costs in CPU, queuert's part against the
SDK's own (issue 12), in this process: ``python -m benchmarks.telemetry_cost
[N]`` prints one JSON object of microseconds per attempt (medians of 5
rounds, CPU time of this process, rounds of each kind interleaved).

- ``queuert``: the worker's calls for one no-op attempt that completes its
  chain, with the SDK configured as in benchmarks/telemetry.py (a
  BatchSpanProcessor and a periodic metric reader, exporters that drop
  everything): ``attempt_started`` (the ``process`` span, child of the
  job's stored traceparent, and ``queuert.attempts.started``), the span made
  current in the task's context, ``completed`` (outcome attributes, span
  end, the attempt and chain counters, three histogram records).
- ``sdk``: the same SDK calls made directly with everything prepared
  beforehand: one span started with the same ten attributes under the same
  parent, two attributes set, ended; three histogram records with the same
  attributes. What the SDK costs whoever calls it.
- ``queuert_own``: the difference, queuert's own work.
- ``off``: the same calls with no SDK configured (one check each).

Run in a process of its own (benchmarks/telemetry.py does): it installs the
global providers.
"""

from __future__ import annotations

import contextvars
import json
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _job(i: int) -> Any:
    now_ms = int(time.time() * 1000)
    v7 = uuid.UUID(int=(now_ms << 80) | (7 << 76) | (2 << 62) | i)
    return SimpleNamespace(
        id=v7, type_name="bench", chain_id=v7, chain_type_name="bench", created_at=datetime.now(timezone.utc),
        trace_context=_PARENT, _blockers_json="[]", attempt=1, last_attempt_error=None,
    )


def _queuert(jobs: list[Any]) -> None:
    from queuert.telemetry.attempts import attempt_started

    for job in jobs:
        attempt = attempt_started(job, "worker-1", "staged")
        contextvars.copy_context().run(attempt.attach)
        attempt.completed(chain_completed=True)


def _sdk_calls(mode: str = "staged", parent_traceparent: str | None = _PARENT) -> Any:
    """The SDK calls of one attempt, everything prepared beforehand (for a
    worker of ``mode``; under ``parent_traceparent``, or none)."""
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind

    from queuert.telemetry.traceparent import context_of

    tracer = trace.get_tracer("sdk-alone")
    meter = metrics.get_meter("sdk-alone")
    hists = [meter.create_histogram(f"h{i}", unit="s") for i in range(3)]
    parent = context_of(parent_traceparent) if parent_traceparent is not None else None
    attrs: dict[str, Any] = {
        "messaging.system": "queuert",
        "messaging.operation.type": "process",
        "messaging.destination.name": "bench",
        "queuert.chain.type": "bench",
        "queuert.worker.id": "worker-1",
        "queuert.worker.mode": mode,
        "messaging.message.id": "0193a6f2-8b7c-7d4e-9f10-123456789abc",
        "queuert.chain.id": "0193a6f2-8b7c-7d4e-9f10-123456789abc",
        "queuert.attempt": 1,
    }
    outcome: dict[str, Any] = {"queuert.outcome": "completed", "queuert.chain.completed": True}
    by_type = {"messaging.system": "queuert", "messaging.destination.name": "bench"}
    h_attrs = [{**by_type, "queuert.outcome": "completed"}, by_type, by_type]

    def run(jobs: list[Any]) -> None:
        for _ in jobs:
            span = tracer.start_span("process bench", context=parent, kind=SpanKind.CONSUMER, attributes=attrs)
            span.set_attributes(outcome)
            span.end()
            for h, a in zip(hists, h_attrs):
                h.record(0.001, a)

    return run


def _install() -> None:
    from benchmarks.worker_proc import _install_otel_sdk

    _install_otel_sdk()  # exactly what the worker processes of telemetry.py get


def _per_attempt_us(fn: Any, n: int) -> float:
    jobs = [_job(i) for i in range(n)]
    t0 = time.process_time()
    fn(jobs)
    return (time.process_time() - t0) / n * 1e6


def measure(n: int) -> dict[str, float]:
    off = [_per_attempt_us(_queuert, n) for _ in range(5)]  # no SDK yet
    _install()
    sdk = _sdk_calls()
    rounds: dict[str, list[float]] = {"queuert": [], "sdk": []}
    for _ in range(5):
        rounds["queuert"].append(_per_attempt_us(_queuert, n))
        rounds["sdk"].append(_per_attempt_us(sdk, n))
    q, s = statistics.median(rounds["queuert"]), statistics.median(rounds["sdk"])
    return {"queuert": q, "sdk": s, "queuert_own": q - s, "off": statistics.median(off)}


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)))
