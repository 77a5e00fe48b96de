"""A worker's settings: the checks ``Worker`` applies to its arguments, and
the validated snapshot one run works with (``Worker`` attributes may change
between runs, e.g. ``queuert worker --dsn``)."""

from __future__ import annotations

import dataclasses
import os
import socket
import uuid
from datetime import timedelta
from typing import Any, Literal

from queuert.migrate import validate_schema_name
from queuert.notify.base import Notifier

Mode = Literal["staged", "atomic"]


def check_concurrency(concurrency: int) -> int:
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    return concurrency


def check_mode(mode: str) -> Mode:
    if mode not in ("staged", "atomic"):
        raise ValueError(f"mode must be 'staged' or 'atomic', not {mode!r}")
    return mode  # type: ignore[return-value]


def check_prefetch(prefetch: Any, window: float, most: int | None) -> None:
    if prefetch != "auto" and (isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0):
        raise ValueError(f"prefetch must be 'auto' or a non-negative int, not {prefetch!r}")
    if not window > 0:
        raise ValueError("prefetch_window must be positive")
    if most is not None and most < 0:
        raise ValueError("prefetch_max must not be negative")


def check_prune(after: timedelta | None, failed_after: timedelta | None, interval: float) -> None:
    for name, value in (("prune_after", after), ("prune_failed_after", failed_after)):
        if value is not None and (not isinstance(value, timedelta) or value < timedelta(0)):
            raise ValueError(f"{name} must be a timedelta of at least 0, or None")
    if not interval > 0:
        raise ValueError("prune_interval must be positive")


def as_interval(td: timedelta | float | None) -> timedelta | None:
    if td is None or isinstance(td, timedelta):
        return td
    return timedelta(seconds=float(td))


def new_worker_id() -> str:
    """``<host>-<pid>-<random>``: fresh for every run."""
    host = socket.gethostname().split(".")[0][:40]
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one run works with (see ``queuert.Worker`` for each)."""

    conninfo: str
    schema: str
    worker_id: str
    type_names: list[str]
    concurrency: int
    mode: Mode
    poll_interval: float
    lease: timedelta | None
    reap_interval: float
    renew_interval: float | None
    notifier: Notifier | None
    grace_period: float
    reconnect_max: float
    prepare_threshold: int | None
    flush_connections: int
    prefetch: int | Literal["auto"]
    prefetch_window: float
    prefetch_max: int | None
    batch_notifications: bool
    stats_interval: float = 15.0
    # the worker's own-connection services (run.py): schedule ticks, pruning
    schedules: bool = True
    prune_after: timedelta | None = None
    prune_failed_after: timedelta | None = None
    prune_interval: float = 300.0

    def __post_init__(self) -> None:
        validate_schema_name(self.schema)
        check_concurrency(self.concurrency)
        check_mode(self.mode)
        check_prefetch(self.prefetch, self.prefetch_window, self.prefetch_max)
        check_prune(self.prune_after, self.prune_failed_after, self.prune_interval)
