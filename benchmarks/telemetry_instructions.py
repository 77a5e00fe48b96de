"""One attempt's telemetry in instructions (not in ``make bench``): the
worker's calls for a no-op attempt that completes its chain (as an atomic
slot makes them: ``attempt_started`` for a job without a stored parent, the
span current around the handler, the traceparent for ``complete``,
``completed``), or the same SDK calls made directly with everything
prepared (``benchmarks.telemetry_cost``'s "sdk"), with the SDK configured as
the worker processes of benchmarks/telemetry.py get it. Counted by
valgrind's callgrind inside the measured loop only, so the figure does not
move with the machine's load::

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=_operator_call \\
        --callgrind-out-file=/tmp/cg.out .venv/bin/python -m benchmarks.telemetry_instructions \\
        queuert|sdk N

The instructions per attempt are the total of ``callgrind_annotate
/tmp/cg.out`` over N; 200 attempts run first, uncounted (caches, the
type's cached attributes and bound instruments).
"""

from __future__ import annotations

import operator
import sys
from typing import Any

from .telemetry_cost import _install, _job

WARM = 200


def _queuert(jobs: list[Any]) -> None:
    from queuert.telemetry.attempts import attempt_started

    for job in jobs:
        attempt = attempt_started(job, "worker-1", "atomic")
        with attempt.active():
            pass
        attempt.traceparent()
        attempt.completed(True)


def _sdk() -> Any:
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind

    tracer = trace.get_tracer("sdk-alone")
    meter = metrics.get_meter("sdk-alone")
    hists = [meter.create_histogram(f"h{i}", unit="s") for i in range(3)]
    attrs: dict[str, Any] = {
        "messaging.system": "queuert",
        "messaging.operation.type": "process",
        "messaging.destination.name": "bench",
        "queuert.chain.type": "bench",
        "queuert.worker.id": "worker-1",
        "queuert.worker.mode": "atomic",
        "messaging.message.id": "0193a6f2-8b7c-7d4e-9f10-123456789abc",
        "queuert.chain.id": "0193a6f2-8b7c-7d4e-9f10-123456789abc",
        "queuert.attempt": 1,
    }
    outcome: dict[str, Any] = {"queuert.outcome": "completed", "queuert.chain.completed": True}
    by_type = {"messaging.system": "queuert", "messaging.destination.name": "bench"}
    h_attrs = [{**by_type, "queuert.outcome": "completed"}, by_type, by_type]

    def run(jobs: list[Any]) -> None:
        for _ in jobs:
            span = tracer.start_span("process bench", kind=SpanKind.CONSUMER, attributes=attrs)
            span.set_attributes(outcome)
            span.end()
            for h, a in zip(hists, h_attrs):
                h.record(0.001, a)

    return run


def main() -> None:
    kind, n = sys.argv[1], int(sys.argv[2])
    _install()
    fn = _queuert if kind == "queuert" else _sdk()
    jobs = [_job(i) for i in range(WARM + n)]
    for job in jobs:
        job.trace_context = None  # as the benchmark's jobs: created without a span
    fn(jobs[:WARM])
    operator.call(fn, jobs[WARM:])  # callgrind counts inside operator.call only


if __name__ == "__main__":
    main()
