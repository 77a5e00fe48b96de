"""`make demo` without the command line: the signup story of ``queuert demo``.

The story itself ships inside the package (python_client/src/queuert/demo.py)
so that an installed queuert runs it too. This script runs it on the server
of DATABASE_URL (default: the local server) in database $QUEUERT_DEMO_DB
(default queuert_demo); `queuert demo` adds the embedded-server fallback.
"""

from __future__ import annotations

import os
import sys

from queuert.demo import DEFAULT_DEMO_DB, run

if __name__ == "__main__":
    sys.exit(
        run(
            os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
            os.environ.get("QUEUERT_DEMO_DB", DEFAULT_DEMO_DB),
        )
    )
