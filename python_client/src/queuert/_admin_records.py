"""What the job-type, schedule and retention calls return: a type's policy,
a schedule, a tick a worker fired, a pruned batch."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

__all__ = ["FiredTick", "JobTypePolicy", "PruneResult", "Schedule"]


def _pick(cls: type, row: Mapping[str, Any]) -> dict[str, Any]:
    return {f.name: row[f.name] for f in dataclasses.fields(cls)}


@dataclasses.dataclass(frozen=True)
class JobTypePolicy:
    """A row of ``queuert.job_type``: retry, lease and limits of one type
    (``max_running``, ``rate_limit`` per ``rate_interval``; None: no limit)."""

    type_name: str
    max_attempts: int | None
    backoff_initial: timedelta
    backoff_multiplier: float
    backoff_max: timedelta
    lease: timedelta
    max_running: int | None
    rate_limit: int | None
    rate_interval: timedelta | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobTypePolicy:
        return cls(**_pick(cls, row))


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A row of ``queuert.schedule``: a chain of ``type_name`` started with
    ``input`` at every tick of ``cron`` in ``timezone``."""

    name: str
    cron: str
    timezone: str
    type_name: str
    input: Any
    priority: int
    next_tick_at: datetime
    last_tick_at: datetime | None
    last_chain_id: UUID | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Schedule:
        return cls(**_pick(cls, row))


@dataclasses.dataclass(frozen=True)
class FiredTick:
    """A row of ``fire_schedules``: the chain started for a schedule's tick
    (``deduplicated`` when that tick had already started it) and its type."""

    schedule_name: str
    tick_at: datetime
    chain_id: UUID
    deduplicated: bool
    next_tick_at: datetime
    type_name: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> FiredTick:
        return cls(**_pick(cls, row))


@dataclasses.dataclass(frozen=True)
class PruneResult:
    """One batch of ``prune``: chains and jobs deleted."""

    chains: int
    jobs: int
