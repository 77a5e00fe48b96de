"""The OpenTelemetry API is imported only once something else imported it
(queuert.telemetry.switch): a worker started without an SDK does not pay
for the import, and an SDK configured after the worker started is still
picked up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WORKER_WITHOUT_SDK = """
import sys
import queuert, queuert._sqlite as qs
from queuert.worker import Worker
path = sys.argv[1]
qs.migrate(path)
conn = qs.connect(path)
queuert.start_chain(conn, "lazy", {"n": 1})
conn.commit()
worker = Worker(f"sqlite:///{path}", mode="atomic")
done = []

@worker.handler("lazy")
async def lazy(job):
    done.append(job.id)
    worker.stop()

worker.run()
assert done, "the job did not run"
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
assert not loaded, loaded
from queuert.telemetry import switch
assert switch.inactive() and switch.tracer() is None and switch.meter() is None
# an SDK configured now (its import brings the API's modules) is seen
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry import trace
trace.set_tracer_provider(TracerProvider())
assert not switch.inactive() and switch.tracer() is not None
print("ok")
"""


def test_a_worker_without_an_sdk_never_imports_the_api(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", WORKER_WITHOUT_SDK, str(tmp_path / "lazy.db")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
