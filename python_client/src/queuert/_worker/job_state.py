"""Where a job is in a worker's hands (``JobContext._state``).

Ordered: every state from ``LOST`` on means the worker is done with the job
(comparisons such as ``state >= LOST`` rely on it).
"""

QUEUED = -1  # claimed ahead, waiting for a free slot
RUNNING = 0  # handler running
ACKING = 1  # outcome buffered, not yet sent
FLUSHING = 2  # outcome being written
LOST = 3  # no longer ours (lease lost / finished from outside)
RELEASED = 4  # released at shutdown
DONE = 5  # acknowledged
