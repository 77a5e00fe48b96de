"""Counters and histograms (OpenTelemetry metrics API).

Instruments are created once per meter (that is, per configured meter
provider) and looked up per record; every function is a no-op returning at
once when no SDK is configured or telemetry is off (:mod:`.switch`). The
counters are summed in-process and reported as observable counters (the
same cumulative sums; see ``_Counters``); the histograms are the SDK's. All
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

import threading
import time
from datetime import datetime
from typing import Any
from uuid import UUID

from . import attributes as a
from .switch import meter

__all__ = [
    "Bound",
    "attempt_failed",
    "bound",
    "chain_completed",
    "continuation_created",
    "count_attempt_started",
    "instruments",
    "job_created",
    "lease_expired",
    "leases_renewed",
    "reaped",
    "record_chain_completed",
    "record_finished",
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

Key = tuple[tuple[str, Any], ...]  # a counter's attributes, hashable


class _Counters:
    """The counters of one meter, summed here and reported as observable
    counters (cumulative sums, as a counter's are) when the SDK collects: an
    increment is a dict update, where the SDK's own ``Counter.add`` costs as
    much as a fifth of a worker's whole per-job time at thousands of jobs
    per second."""

    def __init__(self, m: Any) -> None:
        from opentelemetry.metrics import Observation

        self.lock = threading.Lock()
        self.totals: dict[str, dict[Key, int]] = {key: {} for key in _COUNTERS}
        for key, (name, description) in _COUNTERS.items():
            totals = self.totals[key]

            def observe(_options: Any, totals: dict[Key, int] = totals) -> list[Any]:
                with self.lock:
                    items = list(totals.items())
                return [Observation(value, dict(attrs)) for attrs, value in items]

            m.create_observable_counter(name, [observe], unit="{job}", description=description)

    def add(self, key: str, attrs: Key, n: int = 1) -> None:
        totals = self.totals[key]
        with self.lock:
            totals[attrs] = totals.get(attrs, 0) + n


class _Instruments:
    __slots__ = ("bound", "counters", "histograms")

    def __init__(self, m: Any) -> None:
        self.counters = _Counters(m)
        self.histograms = {
            key: m.create_histogram(name, unit="s", description=description)
            for key, (name, description) in _HISTOGRAMS.items()
        }
        # per (type, chain type): what a worker's attempt records with (Bound)
        self.bound: dict[tuple[str, str], Bound] = {}


class Bound:
    """The counters, histograms and attribute sets of one job type (and its
    chain type), resolved once per meter: a worker's attempt counts and
    records with these in hand, without building keys or looking up
    instruments per call, and a completion takes the counters' lock once
    for both of its counters."""

    __slots__ = (
        "attempt_duration",
        "chain_attrs",
        "chain_duration",
        "chain_key",
        "chains",
        "completed",
        "completed_attrs",
        "completed_key",
        "continued_attrs",
        "continued_key",
        "job_duration",
        "lock",
        "started",
        "type_attrs",
        "type_key",
    )

    def __init__(self, ins: _Instruments, type_name: str, chain_type: str) -> None:
        totals = ins.counters.totals
        self.lock = ins.counters.lock
        self.started = totals["attempts_started"]
        self.completed = totals["attempts_completed"]
        self.chains = totals["chains_completed"]
        self.type_key, self.type_attrs = _type_parts(type_name)
        self.chain_key, self.chain_attrs = _type_parts(chain_type)
        self.completed_key, self.completed_attrs = _outcome_parts(type_name, "completed")
        self.continued_key, self.continued_attrs = _outcome_parts(type_name, "continued")
        histograms = ins.histograms
        self.attempt_duration = histograms["attempt_duration"]
        self.job_duration = histograms["job_duration"]
        self.chain_duration = histograms["chain_duration"]

    def count_started(self) -> None:
        """``queuert.attempts.started``."""
        key, totals = self.type_key, self.started
        with self.lock:
            totals[key] = totals.get(key, 0) + 1

    def completed_job(self, seconds: float, created_at: datetime | None, chain_id: Any) -> None:
        """An attempt that completed its job (``record_finished``), and its
        chain when ``chain_id`` is given (``record_chain_completed``), with
        one clock read for the job's and the chain's durations."""
        key, totals = self.completed_key, self.completed
        with self.lock:
            totals[key] = totals.get(key, 0) + 1
            if chain_id is not None:
                chains, chain_key = self.chains, self.chain_key
                chains[chain_key] = chains.get(chain_key, 0) + 1
        self.attempt_duration.record(seconds, self.completed_attrs)
        now = time.time()
        if created_at is not None:
            job_seconds = now - created_at.timestamp()
            self.job_duration.record(job_seconds if job_seconds > 0 else 0.0, self.type_attrs)
        if chain_id is not None:
            created_ms = _uuid7_ms(chain_id)
            if created_ms is not None:
                chain_seconds = now - created_ms / 1000
                self.chain_duration.record(chain_seconds if chain_seconds > 0 else 0.0, self.chain_attrs)

    def continued_job(self, seconds: float, created_at: datetime | None) -> None:
        """An attempt that continued its chain (``record_finished``)."""
        key, totals = self.continued_key, self.completed
        with self.lock:
            totals[key] = totals.get(key, 0) + 1
        self.attempt_duration.record(seconds, self.continued_attrs)
        if created_at is not None:
            job_seconds = time.time() - created_at.timestamp()
            self.job_duration.record(job_seconds if job_seconds > 0 else 0.0, self.type_attrs)


def bound(ins: _Instruments, type_name: str, chain_type: str) -> Bound:
    """``ins``' Bound for an attempt of ``type_name`` in a ``chain_type`` chain."""
    found = ins.bound.get((type_name, chain_type))
    if found is None:
        found = ins.bound[(type_name, chain_type)] = Bound(ins, type_name, chain_type)
    return found


_cache: tuple[Any, _Instruments | None] = (None, None)


def instruments() -> _Instruments | None:
    """The instruments of the current meter; None when inactive."""
    global _cache
    m = meter()
    if m is None:
        return None
    cached_meter, made = _cache
    if cached_meter is not m or made is None:
        made = _Instruments(m)
        _cache = (m, made)
    return made


def _key(type_name: str, *extra: tuple[str, Any]) -> Key:
    return ((a.SYSTEM, a.SYSTEM_NAME), (a.DESTINATION, type_name), *extra)


# Per type (and outcome): a counter's key and a histogram's attributes, built
# once: a worker records them for every attempt. The SDK only reads the dicts.
_TYPE_PARTS: dict[str, tuple[Key, dict[str, Any]]] = {}
_OUTCOME_PARTS: dict[tuple[str, str], tuple[Key, dict[str, Any]]] = {}


def _type_parts(type_name: str) -> tuple[Key, dict[str, Any]]:
    found = _TYPE_PARTS.get(type_name)
    if found is None:
        found = _TYPE_PARTS[type_name] = (_key(type_name), {a.SYSTEM: a.SYSTEM_NAME, a.DESTINATION: type_name})
    return found


def _outcome_parts(type_name: str, outcome: str) -> tuple[Key, dict[str, Any]]:
    found = _OUTCOME_PARTS.get((type_name, outcome))
    if found is None:
        found = _OUTCOME_PARTS[(type_name, outcome)] = (
            _key(type_name, (a.OUTCOME, outcome)),
            {a.SYSTEM: a.SYSTEM_NAME, a.DESTINATION: type_name, a.OUTCOME: outcome},
        )
    return found


def _attrs(type_name: str) -> dict[str, Any]:
    return _type_parts(type_name)[1]


def count_attempt_started(ins: _Instruments, type_name: str) -> None:
    """``attempt_started`` with the instruments in hand (the worker's path)."""
    ins.counters.add("attempts_started", _type_parts(type_name)[0])


def record_finished(
    ins: _Instruments,
    type_name: str,
    outcome: str,
    seconds: float,
    created_at: datetime | None,
    now_s: float | None = None,
) -> None:
    """An attempt that completed or continued its job, with the instruments
    in hand: the counter, the attempt's duration and the job's (created to
    now; ``now_s``: time.time(), when the caller has it)."""
    key, attrs = _outcome_parts(type_name, outcome)
    ins.counters.add("attempts_completed", key)
    histograms = ins.histograms
    histograms["attempt_duration"].record(seconds, attrs)
    if created_at is not None:
        job_seconds = (time.time() if now_s is None else now_s) - created_at.timestamp()
        histograms["job_duration"].record(job_seconds if job_seconds > 0 else 0.0, _type_parts(type_name)[1])


def job_created(type_name: str, is_chain: bool) -> None:
    ins = instruments()
    if ins is None:
        return
    key = _key(type_name)
    ins.counters.add("jobs_created", key)
    ins.counters.add("chains_created" if is_chain else "continuations", key)


def continuation_created(type_name: str) -> None:
    """A worker's continuation (counted as a created job too)."""
    job_created(type_name, False)


def attempt_failed(type_name: str, error_type: str, seconds: float, will_retry: bool) -> None:
    """A failed attempt; ``will_retry``: the job is pending again (a retry),
    else it failed for good."""
    ins = instruments()
    if ins is None:
        return
    ins.counters.add("attempts_failed", _key(type_name, (a.ERROR_TYPE, error_type), (a.WILL_RETRY, will_retry)))
    ins.histograms["attempt_duration"].record(seconds, {**_attrs(type_name), a.OUTCOME: "failed"})


def chain_completed(chain_type: str, chain_id: UUID, now_s: float | None = None) -> None:
    ins = instruments()
    if ins is not None:
        record_chain_completed(ins, chain_type, chain_id, now_s)


def record_chain_completed(ins: _Instruments, chain_type: str, chain_id: UUID, now_s: float | None = None) -> None:
    """``chain_completed`` with the instruments in hand."""
    key, attrs = _type_parts(chain_type)
    ins.counters.add("chains_completed", key)
    created_ms = _uuid7_ms(chain_id)
    if created_ms is not None:
        now = time.time() if now_s is None else now_s
        ins.histograms["chain_duration"].record(max(0.0, now - created_ms / 1000), attrs)


def _uuid7_ms(chain_id: UUID) -> int | None:
    """Milliseconds since the epoch in a UUIDv7 (the engine's job ids)."""
    if not isinstance(chain_id, UUID):
        chain_id = UUID(str(chain_id))
    value = chain_id.int
    # version 7 of the RFC 4122 variant (UUID.version, without its property calls)
    if (value >> 76) & 0xF != 7 or (value >> 62) & 0x3 != 0b10:
        return None
    return value >> 80


def leases_renewed(count: int) -> None:
    ins = instruments()
    if ins is not None and count:
        ins.counters.add("leases_renewed", ((a.SYSTEM, a.SYSTEM_NAME),), count)


def lease_expired(type_name: str, reason: str) -> None:
    ins = instruments()
    if ins is not None:
        ins.counters.add("leases_expired", _key(type_name, (a.LOST_REASON, _reason_kind(reason))))


_REASON_KINDS = ("taken", "finished", "not_found", "reaped", "released")


def _reason_kind(reason: str) -> str:
    """A lost job's reason as one of a few words (a metric attribute must
    not carry free text): the engine's taken / finished / not_found, reaped,
    released, else other."""
    for kind in _REASON_KINDS:
        if kind in reason:
            return kind
    return "other"


def reaped(count: int) -> None:
    ins = instruments()
    if ins is not None and count:
        ins.counters.add("reaped", ((a.SYSTEM, a.SYSTEM_NAME),), count)
