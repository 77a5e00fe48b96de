"""What the client returns: the started chain, the completed or continued
job, a chain with its jobs, a page of chains."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

__all__ = [
    "Chain",
    "ChainPage",
    "CompletedJob",
    "ContinuedJob",
    "Job",
    "StartedChain",
    "STARTED_CHAIN_SETTERS",
    "new_started_chain",
    "started_chain",
]

O = TypeVar("O")  # noqa: E741
O_co = TypeVar("O_co", covariant=True)


class _ParsesOutput(Protocol[O_co]):
    """What :meth:`Chain.output_as` needs of a JobType (no import of it)."""

    def parse_output(
        self, stored: Any, *, job_id: UUID | None = None, chain_id: UUID | None = None
    ) -> O_co: ...


@functools.lru_cache(maxsize=None)
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _fields_from(cls: type, row: Mapping[str, Any]) -> dict[str, Any]:
    # field names cached per class: dataclasses.fields() is slow per row
    return {name: row[name] for name in _field_names(cls) if name in row}


@dataclasses.dataclass(frozen=True)
class StartedChain:
    """The result of :func:`queuert.start_chain`. ``id == chain_id`` (a chain is
    its first job); ``deduplicated`` is true when an existing chain matched the
    dedup key and nothing was written."""

    # slots: a batch returns thousands, and an instance dict would be one
    # more object per row for the garbage collector to count (_chain_spec);
    # __weakref__ kept, as a dict-based instance had it
    __slots__ = (
        "id", "chain_id", "type_name", "status", "scheduled_at", "created_at", "deduplicated",
        "__weakref__",
    )

    id: UUID
    chain_id: UUID
    type_name: str
    status: str
    scheduled_at: datetime
    created_at: datetime
    deduplicated: bool

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StartedChain:
        return cls(**_fields_from(cls, row))

    def __getstate__(self) -> tuple[Any, ...]:
        # copy and pickle (a frozen dataclass's __setattr__ would refuse the
        # default restore of slots)
        return tuple(getattr(self, name) for name in _field_names(StartedChain))

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(_field_names(StartedChain), state):
            object.__setattr__(self, name, value)


_new_object = object.__new__
#: each field's slot setter, in field order, past the frozen dataclass's
#: __setattr__ (queuert._started_rows builds a batch's rows with them)
STARTED_CHAIN_SETTERS: tuple[Any, ...] = tuple(
    StartedChain.__dict__[f.name].__set__ for f in dataclasses.fields(StartedChain)
)
(
    _set_id, _set_chain_id, _set_type_name, _set_status, _set_scheduled_at, _set_created_at,
    _set_deduplicated,
) = STARTED_CHAIN_SETTERS


def started_chain(values: Sequence[Any]) -> StartedChain:
    """A :class:`StartedChain` from a row ``(id, type_name, status,
    scheduled_at, created_at, deduplicated)`` of ``start_chain(s)``, built
    without the frozen dataclass's ``__init__`` (which sets each field
    through ``object.__setattr__``): the client builds one per item of a
    batch, as psycopg's row maker. A chain is its root job, so ``chain_id``
    is ``id``."""
    return new_started_chain(values[0], values[1], values[2], values[3], values[4], values[5])


def new_started_chain(
    id: UUID, type_name: str, status: str, scheduled_at: datetime, created_at: datetime, deduplicated: bool
) -> StartedChain:
    chain: StartedChain = _new_object(StartedChain)
    _set_id(chain, id)
    _set_chain_id(chain, id)
    _set_type_name(chain, type_name)
    _set_status(chain, status)
    _set_scheduled_at(chain, scheduled_at)
    _set_created_at(chain, created_at)
    _set_deduplicated(chain, deduplicated)
    return chain


@dataclasses.dataclass(frozen=True)
class ContinuedJob:
    """The next job created by a continuation (``continue_with`` row)."""

    id: UUID
    chain_id: UUID
    chain_index: int
    type_name: str
    status: str
    scheduled_at: datetime
    deduplicated: bool

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ContinuedJob:
        return cls(**_fields_from(cls, row))


@dataclasses.dataclass(frozen=True)
class CompletedJob:
    """The result of :func:`queuert.complete_chain`: the chain's job that was
    completed, whether the chain is now complete, and, for a continuation,
    the next job."""

    job_id: UUID
    chain_id: UUID
    status: str
    chain_completed: bool
    continued_to: ContinuedJob | None = None


@dataclasses.dataclass(frozen=True)
class Job:
    """A row of ``queuert.job`` (as returned by ``chain_jobs`` and ``claim``).

    Columns the engine adds beyond these are kept in ``extra``.
    """

    id: UUID
    type_name: str
    chain_id: UUID
    chain_type_name: str
    chain_index: int
    input: Any
    output: Any
    status: str
    priority: int
    attempt: int
    scheduled_at: datetime
    created_at: datetime
    completed_at: datetime | None
    completed_by: str | None
    leased_by: str | None
    leased_until: datetime | None
    last_attempt_at: datetime | None
    last_attempt_error: str | None
    continued_to: UUID | None
    dedup_key: str | None
    trace_context: str | None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in row.items() if k in known and k != "extra"}
        extra = {k: v for k, v in row.items() if k not in known}
        return cls(**values, extra=extra)


@dataclasses.dataclass(frozen=True)
class Chain:
    """A row of the ``queuert.chain`` view; :func:`queuert.get_chain` also
    fills ``jobs`` (in ``chain_index`` order), :func:`queuert.list_chains`
    leaves it empty."""

    chain_id: UUID
    type_name: str
    status: str
    current_job_id: UUID
    current_type_name: str
    job_count: int
    created_at: datetime
    completed_at: datetime | None
    output: Any
    jobs: tuple[Job, ...] = ()

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def current_job(self) -> Job | None:
        for job in self.jobs:
            if job.id == self.current_job_id:
                return job
        return None

    def output_as(self, job_type: _ParsesOutput[O]) -> O:
        """The chain's output parsed as the output of ``job_type`` (the type
        of the chain's last job)."""
        return job_type.parse_output(self.output, chain_id=self.chain_id)

    @classmethod
    def from_row(cls, row: Mapping[str, Any], jobs: Iterable[Job] = ()) -> Chain:
        return cls(**_fields_from(cls, row), jobs=tuple(jobs))


@dataclasses.dataclass(frozen=True)
class ChainPage:
    """One page of :func:`queuert.list_chains`, newest first. Pass
    ``next_cursor`` as ``after`` to get the next page; ``None`` on the last."""

    items: list[Chain]
    next_cursor: str | None
