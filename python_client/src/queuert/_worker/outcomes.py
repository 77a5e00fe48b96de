"""What a handler's attempt came to, as typed records (not tuples and codes).

A dispatch turns a handler's return value or exception into one of these;
the acknowledgement path hands ``Ack(job, outcome)`` records to the store,
which writes each kind with its engine function. Frozen: an outcome is
decided once and then only carried.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Union

from queuert._continuation import Continuation
from queuert.job import JobContext


@dataclasses.dataclass(frozen=True, slots=True)
class Completed:
    """The job is done; ``output_json`` is its output as JSON text (None: null)."""

    output_json: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Continued:
    """The chain goes on with the next job."""

    continuation: Continuation


@dataclasses.dataclass(frozen=True, slots=True)
class Failed:
    """The attempt failed with ``error``. The retry time is ``retry_at``, or
    ``retry_after`` from the database's now, or (both None) the type's
    backoff."""

    error: str
    retry_at: datetime | None = None
    retry_after: timedelta | None = None

    def asked_retry_at(self, now: datetime) -> datetime | None:
        """The retry time the handler asked for, ``retry_after`` counted from
        ``now``; None leaves it to the type's backoff."""
        if self.retry_at is not None:
            return self.retry_at
        if self.retry_after is not None:
            return now + self.retry_after
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Released:
    """Claimed but never started: given back with its attempt restored."""


Outcome = Union[Completed, Continued, Failed, Released]

#: released at shutdown: a started job that may have had effects is failed
#: with an immediate retry (a never-started one is ``Released``)
SHUTDOWN_RELEASE = Failed("released: worker shutting down", None, timedelta(0))


class Ack(NamedTuple):
    """One acknowledgement to write: a job and what its attempt came to.

    A NamedTuple, not a frozen dataclass like the outcomes: one is made per
    job on the hot path, and a frozen dataclass's __init__ (object.__setattr__
    per field) cost about 0.6 us more per job, ~3% of a staged worker's CPU
    per no-op job."""

    job: JobContext[Any]
    outcome: Outcome


class AcksByKind(NamedTuple):
    """Acknowledgements sorted by what their attempts came to, each list in
    the order given: both stores write one engine call per kind."""

    completes: list[Ack]
    continues: list[Ack]
    fails: list[Ack]
    releases: list[Ack]


def by_kind(acks: Sequence[Ack]) -> AcksByKind:
    sorted_acks = AcksByKind([], [], [], [])
    for ack in acks:
        kind = type(ack.outcome)
        if kind is Completed:
            sorted_acks.completes.append(ack)
        elif kind is Continued:
            sorted_acks.continues.append(ack)
        elif kind is Failed:
            sorted_acks.fails.append(ack)
        else:
            sorted_acks.releases.append(ack)
    return sorted_acks


_MAX_ERROR_TEXT = 8000


def error_text(exc: BaseException) -> str:
    """``Type: message`` plus the traceback, capped: a failure's error."""
    head = f"{type(exc).__name__}: {exc}"
    try:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:  # pragma: no cover - defensive
        tb = ""
    text = head if not tb else f"{head}\n\n{tb}"
    if len(text) > _MAX_ERROR_TEXT:
        text = text[: _MAX_ERROR_TEXT - 20] + "\n... (truncated)"
    return text
