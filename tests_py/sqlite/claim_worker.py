"""A claiming process for test_sqlite_processes.py.

    python claim_worker.py DB WORKER_ID OUT_FILE LEASE_SECONDS ABANDON_RATE GO_FILE

Reaps, claims a few jobs, completes most of them and abandons the rest (as
a crashed worker would: no completion, the lease runs out), until no job is
pending or running. Each claim is written to OUT_FILE as a JSON line: job
id, attempt, and the lease's start and end (epoch microseconds). Any error,
"database is locked" included, ends the process with a traceback and a
non-zero status. It starts once GO_FILE exists (OUT_FILE is created first,
to say it is ready), so all processes claim at the same time.
"""

from __future__ import annotations

import json
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

import queuert._sqlite as qs
from queuert._sqlite._values import to_us


def main() -> None:
    path, worker, out, lease_s, abandon = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
    go = Path(sys.argv[6])
    lease = timedelta(seconds=lease_s)
    conn = qs.connect(path, timeout=30)
    rng = random.Random(worker)
    with open(out, "w") as log:
        while not go.exists():
            time.sleep(0.005)
        while True:
            qs.reap(conn)
            claimed = qs.claim(conn, worker, max_jobs=rng.randint(1, 4), lease=lease)
            for job in claimed:
                until = to_us(job["leased_until"])
                log.write(json.dumps({
                    "job": str(job["id"]), "attempt": job["attempt"], "worker": worker,
                    "from": until - round(lease_s * 1_000_000), "until": until,
                }) + "\n")
            log.flush()
            done = [j for j in claimed if rng.random() >= abandon]
            if done:
                qs.complete_jobs(conn, worker, [j["id"] for j in done], [{"by": worker}] * len(done),
                                 [j["attempt"] for j in done])
            if not claimed:
                left = conn.execute(
                    "SELECT count(*) FROM queuert_job WHERE status IN ('pending', 'running')"
                ).fetchone()[0]
                if left == 0:
                    return
                time.sleep(0.01)


if __name__ == "__main__":
    main()
