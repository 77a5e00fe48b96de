"""What a handler hands back besides an output: the chain's next job
(:class:`Continuation`, built with :func:`continue_with`) or a retry at a
time of its choosing (:class:`RetryAt`). Consumed by the worker, and by
``complete_chain(..., continue_with=...)`` from outside one."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar, overload
from uuid import UUID

from ._job_type import JobType, _check_delays, _type_name_of, dump_payload
from .errors import InvalidArgumentError

__all__ = ["Continuation", "RetryAt", "continue_with"]

I = TypeVar("I")  # noqa: E741 - conventional short name in signatures

@dataclasses.dataclass(frozen=True)
class Continuation:
    """The next job of a chain, as returned by a handler (or given to
    :func:`queuert.complete_chain`). Build it with :func:`continue_with`,
    which mypy checks; constructing it directly validates the input too.

    ``input_json`` is the validated JSON form that will be stored.
    ``priority`` ``None`` keeps the current job's priority.
    """

    job_type: JobType[Any, Any] | str
    input: Any = None
    id: UUID | None = None
    blockers: Sequence[UUID] | None = None
    schedule_at: datetime | None = None
    schedule_after: timedelta | None = None
    priority: int | None = None
    trace_context: str | None = None
    input_json: Any = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_delays(self.schedule_at, self.schedule_after)
        object.__setattr__(self, "input_json", dump_payload(self.job_type, self.input))
        if self.blockers is not None:
            object.__setattr__(self, "blockers", tuple(self.blockers))

    @property
    def type_name(self) -> str:
        return _type_name_of(self.job_type)


@overload
def continue_with(
    next_type: JobType[I, Any],
    input: I,
    *,
    id: UUID | None = None,
    blockers: Sequence[UUID] | None = None,
    schedule_at: datetime | None = None,
    schedule_after: timedelta | None = None,
    priority: int | None = None,
    trace_context: str | None = None,
) -> Continuation: ...


@overload
def continue_with(
    next_type: str,
    input: Any = None,
    *,
    id: UUID | None = None,
    blockers: Sequence[UUID] | None = None,
    schedule_at: datetime | None = None,
    schedule_after: timedelta | None = None,
    priority: int | None = None,
    trace_context: str | None = None,
) -> Continuation: ...


def continue_with(
    next_type: JobType[Any, Any] | str,
    input: Any = None,
    *,
    id: UUID | None = None,
    blockers: Sequence[UUID] | None = None,
    schedule_at: datetime | None = None,
    schedule_after: timedelta | None = None,
    priority: int | None = None,
    trace_context: str | None = None,
) -> Continuation:
    """Hand the chain off to a next job of ``next_type`` with ``input``.

    Typed: mypy rejects an input that is not ``next_type``'s input type.
    The input is validated now; a bad one raises
    :class:`~queuert.errors.PayloadValidationError` before anything is written.
    """
    return Continuation(
        job_type=next_type,
        input=input,
        id=id,
        blockers=blockers,
        schedule_at=schedule_at,
        schedule_after=schedule_after,
        priority=priority,
        trace_context=trace_context,
    )


class RetryAt(Exception):
    """Ask for a retry at a given time instead of the type's backoff.

    A handler may ``return RetryAt(...)`` or ``raise RetryAt(...)``. ``when`` is
    an absolute ``datetime`` (naive means UTC) or a ``timedelta`` from now; a
    time in the past means now. The attempt still counts towards
    ``max_attempts``; ``reason`` is recorded as the attempt's error.
    """

    def __init__(self, when: datetime | timedelta, reason: str = "") -> None:
        if not isinstance(when, (datetime, timedelta)):
            raise InvalidArgumentError(f"RetryAt needs a datetime or timedelta, got {when!r}")
        super().__init__(reason or f"retry requested at {when}")
        self.when = when
        self.reason = reason

    def at(self, now: datetime | None = None) -> datetime:
        """The absolute retry time (aware), relative to ``now`` (default:
        the current UTC time) when ``when`` is a timedelta."""
        if isinstance(self.when, timedelta):
            base = now or datetime.now(timezone.utc)
            return base + self.when
        if self.when.tzinfo is None:
            return self.when.replace(tzinfo=timezone.utc)
        return self.when

    def __repr__(self) -> str:
        return f"RetryAt({self.when!r}, {self.reason!r})"


# --------------------------------------------------------------------------
# requests and records of the client
