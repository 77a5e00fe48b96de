"""Counters and histograms (OpenTelemetry metrics API).

Instruments are created once per meter (that is, per configured meter
provider) and looked up per record; every function is a no-op returning at
once when no SDK is configured or telemetry is off (:mod:`.switch`). All
carry ``messaging.system`` and ``messaging.destination.name`` (the job type);
failures add ``error.type``. Durations are in seconds.

Names:

- ``queuert.jobs.created``, ``queuert.chains.created`` (commit of the creating transaction)
- ``queuert.attempts.started``, ``queuert.attempts.completed`` (completed or
  continued: ``queuert.outcome``), ``queuert.attempts.failed`` (``error.type``;
  ``queuert.will_retry``: a retry is scheduled, or the job failed for good)
- ``queuert.continuations``
- ``queuert.leases.renewed``, ``queuert.leases.expired`` (a worker lost a job)
- ``queuert.jobs.reaped`` (expired leases taken back by ``reap``)
- ``queuert.chains.completed``
- ``queuert.attempt.duration``, ``queuert.job.duration`` (created to
  completed), ``queuert.chain.duration`` (chain created to completed; the
  chain's creation time is read from its id, a UUIDv7 the engine made, so
  chains started with an id of the caller's own are not measured)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from . import attributes as a
from .switch import meter

__all__ = [
    "attempt_failed",
    "attempt_finished",
    "attempt_started",
    "chain_completed",
    "continuation_created",
    "instruments",
    "job_completed",
    "job_created",
    "lease_expired",
    "leases_renewed",
    "reaped",
]

_COUNTERS = {
    "jobs_created": ("queuert.jobs.created", "jobs created (committed)"),
    "chains_created": ("queuert.chains.created", "chains created (committed)"),
    "attempts_started": ("queuert.attempts.started", "attempts started by workers"),
    "attempts_completed": ("queuert.attempts.completed", "attempts that completed or continued their job"),
    "attempts_failed": ("queuert.attempts.failed", "attempts that failed"),
    "continuations": ("queuert.continuations", "continuations created"),
    "leases_renewed": ("queuert.leases.renewed", "job leases renewed"),
    "leases_expired": ("queuert.leases.expired", "jobs a worker lost (lease taken or job finished elsewhere)"),
    "reaped": ("queuert.jobs.reaped", "jobs whose expired lease reap took back"),
    "chains_completed": ("queuert.chains.completed", "chains completed"),
}
_HISTOGRAMS = {
    "attempt_duration": ("queuert.attempt.duration", "one attempt, claim to settled"),
    "job_duration": ("queuert.job.duration", "a job, created to completed"),
    "chain_duration": ("queuert.chain.duration", "a chain, created to completed"),
}

_cache: tuple[Any, dict[str, Any]] = (None, {})


def instruments() -> dict[str, Any] | None:
    """The instruments of the current meter, by short name; None when inactive."""
    global _cache
    m = meter()
    if m is None:
        return None
    cached_meter, made = _cache
    if cached_meter is not m:
        made = {}
        for key, (name, description) in _COUNTERS.items():
            made[key] = m.create_counter(name, unit="{job}", description=description)
        for key, (name, description) in _HISTOGRAMS.items():
            made[key] = m.create_histogram(name, unit="s", description=description)
        _cache = (m, made)
    return made


def _attrs(type_name: str) -> dict[str, Any]:
    return {a.SYSTEM: a.SYSTEM_NAME, a.DESTINATION: type_name}


def job_created(type_name: str, is_chain: bool) -> None:
    ins = instruments()
    if ins is None:
        return
    attrs = _attrs(type_name)
    ins["jobs_created"].add(1, attrs)
    if is_chain:
        ins["chains_created"].add(1, attrs)
    else:
        ins["continuations"].add(1, attrs)


def continuation_created(type_name: str) -> None:
    """A worker's continuation (counted as a created job too)."""
    job_created(type_name, False)


def attempt_started(type_name: str) -> None:
    ins = instruments()
    if ins is not None:
        ins["attempts_started"].add(1, _attrs(type_name))


def attempt_finished(type_name: str, outcome: str, seconds: float) -> None:
    """An attempt that completed or continued its job."""
    ins = instruments()
    if ins is None:
        return
    attrs = _attrs(type_name)
    attrs[a.OUTCOME] = outcome
    ins["attempts_completed"].add(1, attrs)
    ins["attempt_duration"].record(seconds, attrs)


def attempt_failed(type_name: str, error_type: str, seconds: float, will_retry: bool) -> None:
    """A failed attempt; ``will_retry``: the job is pending again (a retry),
    else it failed for good."""
    ins = instruments()
    if ins is None:
        return
    attrs = _attrs(type_name)
    attrs[a.ERROR_TYPE] = error_type
    attrs[a.WILL_RETRY] = will_retry
    ins["attempts_failed"].add(1, attrs)
    ins["attempt_duration"].record(seconds, {**_attrs(type_name), a.OUTCOME: "failed"})


def job_completed(type_name: str, created_at: datetime, completed_at: datetime) -> None:
    ins = instruments()
    if ins is not None:
        ins["job_duration"].record(max(0.0, (completed_at - created_at).total_seconds()), _attrs(type_name))


def chain_completed(chain_type: str, chain_id: UUID, now_s: float | None = None) -> None:
    ins = instruments()
    if ins is None:
        return
    attrs = _attrs(chain_type)
    ins["chains_completed"].add(1, attrs)
    created_ms = _uuid7_ms(chain_id)
    if created_ms is not None:
        import time

        now = time.time() if now_s is None else now_s
        ins["chain_duration"].record(max(0.0, now - created_ms / 1000), attrs)


def _uuid7_ms(chain_id: UUID) -> int | None:
    """Milliseconds since the epoch in a UUIDv7 (the engine's job ids)."""
    if not isinstance(chain_id, UUID):
        chain_id = UUID(str(chain_id))
    if chain_id.version != 7:
        return None
    return chain_id.int >> 80


def leases_renewed(count: int) -> None:
    ins = instruments()
    if ins is not None and count:
        ins["leases_renewed"].add(count, {a.SYSTEM: a.SYSTEM_NAME})


def lease_expired(type_name: str, reason: str) -> None:
    ins = instruments()
    if ins is not None:
        ins["leases_expired"].add(1, {**_attrs(type_name), a.LOST_REASON: reason})


def reaped(count: int) -> None:
    ins = instruments()
    if ins is not None and count:
        ins["reaped"].add(count, {a.SYSTEM: a.SYSTEM_NAME})
