"""The shared Redis and NATS the notify benchmarks use (``scripts/ensure-services.sh``),
and the cleanup that leaves the shared NATS as found."""

from __future__ import annotations

import os

__all__ = ["NATS_URL", "REDIS_URL", "drop_nats_bucket"]

REDIS_URL = os.environ.get("QUEUERT_TEST_REDIS", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("QUEUERT_TEST_NATS", "nats://127.0.0.1:4222")


async def drop_nats_bucket(bucket: str) -> None:
    """Delete a wake-budget KV bucket this run made (nothing if it made none)."""
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_key_value(bucket)
    except Exception:  # never created
        pass
    finally:
        await nc.close()
