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

from .telemetry_cost import _install, _job, _sdk_calls

WARM = 200


def _queuert(jobs: list[Any]) -> None:
    from queuert.telemetry.attempts import attempt_started

    for job in jobs:
        attempt = attempt_started(job, "worker-1", "atomic")
        with attempt.active():
            pass
        attempt.traceparent()
        attempt.completed(True)


def main() -> None:
    kind, n = sys.argv[1], int(sys.argv[2])
    _install()
    # the SDK calls as an atomic slot makes them, for jobs created without a span
    fn = _queuert if kind == "queuert" else _sdk_calls("atomic", None)
    jobs = [_job(i) for i in range(WARM + n)]
    for job in jobs:
        job.trace_context = None  # as the benchmark's jobs: created without a span
    fn(jobs[:WARM])
    operator.call(fn, jobs[WARM:])  # callgrind counts inside operator.call only


if __name__ == "__main__":
    main()
