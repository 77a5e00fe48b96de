"""Typed job types, continuations, retry requests and the client's records.

A job type is declared once, with the Python types of its input and output::

    @dataclass
    class WelcomeInput:
        user_id: int

    class EmailSent(pydantic.BaseModel):
        message_id: str

    welcome = JobType("send-welcome-email", input=WelcomeInput, output=EmailSent,
                      continues_with=("follow-up",))

Input and output may be pydantic models, dataclasses, ``TypedDict``s (from
``typing_extensions`` before Python 3.12, a pydantic rule) or any plain type
pydantic understands (``int``, ``list[str]``, ``datetime`` ...). All of them go
through one code path, pydantic's ``TypeAdapter``: values are validated before
anything is written, serialised to JSON for the ``jsonb`` column, and parsed
back into the declared type when a worker reads them.

``JobType`` is generic in its input and output (``JobType[WelcomeInput,
EmailSent]``), so mypy checks ``start_chain(conn, welcome, WelcomeInput(...))``
and ``continue_with(welcome, ...)`` against the declaration.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, TypeVar, Union, overload
from uuid import UUID

import pydantic
import pydantic_core

from .errors import InvalidArgumentError, PayloadValidationError

__all__ = [
    "Chain",
    "BaseChainSpec",
    "ChainPage",
    "ChainSpec",
    "CompletedJob",
    "Continuation",
    "ContinuedJob",
    "Job",
    "JobType",
    "RetryAt",
    "StartedChain",
    "continue_with",
    "to_json_value",
]

InT = TypeVar("InT")
OutT = TypeVar("OutT")
I = TypeVar("I")  # noqa: E741 - conventional short name in signatures
O = TypeVar("O")  # noqa: E741

#: What ``continues_with`` accepts: names or job types, or a callable
#: returning them (evaluated lazily, so two types may name each other).
ContinuesWith = Union[
    Iterable[Union["JobType[Any, Any]", str]],
    Callable[[], Iterable[Union["JobType[Any, Any]", str]]],
    None,
]

_MAX_NAME = 255
_NoneType = type(None)


def _check_type_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= _MAX_NAME:
        raise InvalidArgumentError(
            f"a job type name is text of 1 to {_MAX_NAME} characters, got {name!r}"
        )
    return name


def to_json_value(value: Any) -> Any:
    """Turn an untyped payload (dicts, dataclasses, models, datetimes ...)
    into JSON-compatible Python, the way pydantic would."""
    try:
        return pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError as e:
        raise InvalidArgumentError(f"payload is not JSON-serialisable: {e}") from e


class JobType(Generic[InT, OutT]):
    """A job type: its name, input and output types, and allowed continuations.

    ``continues_with`` lists the job types (or their names) a job of this type
    may hand off to with :func:`continue_with`; it may be a callable returning
    them, so a type can name itself (a loop) or a type declared later. The
    default, ``None``, allows any continuation; ``()`` allows none (a terminal
    step). The worker enforces it at run time.
    """

    @overload
    def __init__(
        self: JobType[None, None],
        name: str,
        *,
        input: None = None,
        output: None = None,
        continues_with: ContinuesWith = None,
    ) -> None: ...

    @overload
    def __init__(
        self: JobType[I, None],
        name: str,
        *,
        input: type[I],
        output: None = None,
        continues_with: ContinuesWith = None,
    ) -> None: ...

    @overload
    def __init__(
        self: JobType[None, O],
        name: str,
        *,
        input: None = None,
        output: type[O],
        continues_with: ContinuesWith = None,
    ) -> None: ...

    @overload
    def __init__(
        self: JobType[I, O],
        name: str,
        *,
        input: type[I],
        output: type[O],
        continues_with: ContinuesWith = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        name: str,
        *,
        input: object,
        output: object = None,
        continues_with: ContinuesWith = None,
    ) -> None: ...

    def __init__(
        self,
        name: str,
        *,
        input: Any = None,
        output: Any = None,
        continues_with: ContinuesWith = None,
    ) -> None:
        self.name: str = _check_type_name(name)
        self.input_type: Any = type(None) if input is None else input
        self.output_type: Any = type(None) if output is None else output
        self._continues_with = continues_with
        self._resolved_continuations: frozenset[str] | None = None
        self._input_adapter: pydantic.TypeAdapter[Any] | None = None
        self._output_adapter: pydantic.TypeAdapter[Any] | None = None
        # Build the adapters now when possible so a type pydantic cannot
        # handle fails at declaration; forward references resolve later.
        try:
            self._adapter("input")
            self._adapter("output")
        except pydantic.PydanticUndefinedAnnotation:
            pass

    def __repr__(self) -> str:
        return (
            f"JobType({self.name!r}, input={_type_repr(self.input_type)}, "
            f"output={_type_repr(self.output_type)})"
        )

    # ---------------------------------------------------------------- adapters

    def _adapter(self, kind: str) -> pydantic.TypeAdapter[Any]:
        if kind == "input":
            if self._input_adapter is None:
                self._input_adapter = pydantic.TypeAdapter(self.input_type)
            return self._input_adapter
        if self._output_adapter is None:
            self._output_adapter = pydantic.TypeAdapter(self.output_type)
        return self._output_adapter

    def _validate(self, kind: str, value: Any) -> Any:
        try:
            return self._adapter(kind).validate_python(value)
        except pydantic.ValidationError as e:
            raise PayloadValidationError(
                f"invalid {kind} for job type {self.name!r}: {e}",
                type_name=self.name,
                kind=kind,
            ) from e

    def _dump(self, kind: str, value: Any) -> Any:
        if value is None and getattr(self, kind + "_type") is _NoneType:
            return None  # no declared model: nothing to validate or convert
        validated = self._validate(kind, value)
        try:
            return self._adapter(kind).dump_python(validated, mode="json", warnings="error")
        except pydantic_core.PydanticSerializationError as e:
            raise PayloadValidationError(
                f"invalid {kind} for job type {self.name!r}: {e}",
                type_name=self.name,
                kind=kind,
            ) from e

    def _parse(
        self, kind: str, stored: Any, job_id: UUID | None, chain_id: UUID | None
    ) -> Any:
        try:
            return self._adapter(kind).validate_python(stored)
        except pydantic.ValidationError as e:
            where = f" of job {job_id}" if job_id else ""
            raise PayloadValidationError(
                f"stored {kind}{where} no longer parses as the {kind} of job type "
                f"{self.name!r} ({_type_repr(getattr(self, kind + '_type'))}): {e}",
                type_name=self.name,
                kind=kind,
                stored=True,
                job_id=job_id,
                chain_id=chain_id,
            ) from e

    # ---------------------------------------------------------------- input

    def validate_input(self, value: Any) -> InT:
        """Validate (and coerce) a value into the declared input type."""
        return self._validate("input", value)  # type: ignore[no-any-return]

    def dump_input(self, value: InT) -> Any:
        """Validate ``value`` and return its JSON-compatible form, as stored."""
        return self._dump("input", value)

    def parse_input(
        self, stored: Any, *, job_id: UUID | None = None, chain_id: UUID | None = None
    ) -> InT:
        """Parse a stored (``jsonb``) input; :class:`PayloadValidationError`
        with ``stored=True`` when it no longer matches the declaration."""
        return self._parse("input", stored, job_id, chain_id)  # type: ignore[no-any-return]

    # ---------------------------------------------------------------- output

    def validate_output(self, value: Any) -> OutT:
        return self._validate("output", value)  # type: ignore[no-any-return]

    def dump_output(self, value: OutT) -> Any:
        return self._dump("output", value)

    def parse_output(
        self, stored: Any, *, job_id: UUID | None = None, chain_id: UUID | None = None
    ) -> OutT:
        return self._parse("output", stored, job_id, chain_id)  # type: ignore[no-any-return]

    # ---------------------------------------------------------------- continuations

    @property
    def continues_with(self) -> frozenset[str] | None:
        """Names of the types this type may continue with (``None``: any)."""
        if self._continues_with is None:
            return None
        if self._resolved_continuations is None:
            raw = self._continues_with
            items = raw() if callable(raw) else raw
            names: set[str] = set()
            for item in items:
                names.add(item.name if isinstance(item, JobType) else _check_type_name(item))
            self._resolved_continuations = frozenset(names)
        return self._resolved_continuations

    def may_continue_with(self, type_name: str) -> bool:
        allowed = self.continues_with
        return allowed is None or type_name in allowed

    def check_continuation(self, continuation: Continuation) -> None:
        """Raise :class:`InvalidArgumentError` if this type may not hand off
        to the continuation's type."""
        if not self.may_continue_with(continuation.type_name):
            allowed = ", ".join(sorted(self.continues_with or ())) or "nothing"
            raise InvalidArgumentError(
                f"job type {self.name!r} may not continue with "
                f"{continuation.type_name!r} (declared: {allowed})"
            )


def _type_repr(t: Any) -> str:
    return getattr(t, "__name__", None) or repr(t)


def _type_name_of(job_type: JobType[Any, Any] | str) -> str:
    return job_type.name if isinstance(job_type, JobType) else _check_type_name(job_type)


def dump_payload(job_type: JobType[Any, Any] | str, value: Any) -> Any:
    """The JSON form of an input: validated for a JobType, plain otherwise."""
    if isinstance(job_type, JobType):
        return job_type.dump_input(value)
    return to_json_value(value)


def _check_delays(
    schedule_at: datetime | None, schedule_after: timedelta | None
) -> None:
    if schedule_at is not None and schedule_after is not None:
        raise InvalidArgumentError("give schedule_at or schedule_after, not both")
    if schedule_after is not None and schedule_after < timedelta(0):
        raise InvalidArgumentError(f"schedule_after must not be negative: {schedule_after}")


# --------------------------------------------------------------------------
# continuations and retry requests (consumed by the worker)


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


class BaseChainSpec:
    """Non-generic base of :class:`ChainSpec`: ``start_chains`` takes a
    sequence of these, so the list gives no type context that would let a
    wrong ``ChainSpec(job_type, input)`` pass mypy."""

    __slots__ = ()


@dataclasses.dataclass(frozen=True, init=False)
class ChainSpec(BaseChainSpec, Generic[InT]):
    """One item of :func:`queuert.start_chains`; the same options as
    :func:`queuert.start_chain`. Typed like ``start_chain``: with a JobType,
    mypy checks ``input`` and it is validated here, when the spec is built
    (``input_json`` is what will be stored). With a type *name* the input is
    stored as given and serialised once, with the whole batch."""

    job_type: JobType[InT, Any] | str
    input: InT
    # Options at their defaults live on the class, so building the common
    # spec (a type and an input) stores two attributes, not eleven.
    id: UUID | None = None
    schedule_at: datetime | None = None
    schedule_after: timedelta | None = None
    blockers: tuple[UUID, ...] | None = None
    dedup_key: str | None = None
    dedup_scope: str = "incomplete"
    dedup_window: timedelta | None = None
    priority: int = 0
    trace_context: str | None = None

    @overload
    def __init__(
        self: ChainSpec[None],
        job_type: JobType[None, Any],
        *,
        id: UUID | None = None,
        schedule_at: datetime | None = None,
        schedule_after: timedelta | None = None,
        blockers: Sequence[UUID] | None = None,
        dedup_key: str | None = None,
        dedup_scope: str = "incomplete",
        dedup_window: timedelta | None = None,
        priority: int = 0,
        trace_context: str | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self: ChainSpec[I],
        job_type: JobType[I, Any],
        input: I,
        *,
        id: UUID | None = None,
        schedule_at: datetime | None = None,
        schedule_after: timedelta | None = None,
        blockers: Sequence[UUID] | None = None,
        dedup_key: str | None = None,
        dedup_scope: str = "incomplete",
        dedup_window: timedelta | None = None,
        priority: int = 0,
        trace_context: str | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self: ChainSpec[Any],
        job_type: str,
        input: Any = None,
        *,
        id: UUID | None = None,
        schedule_at: datetime | None = None,
        schedule_after: timedelta | None = None,
        blockers: Sequence[UUID] | None = None,
        dedup_key: str | None = None,
        dedup_scope: str = "incomplete",
        dedup_window: timedelta | None = None,
        priority: int = 0,
        trace_context: str | None = None,
    ) -> None: ...

    def __init__(
        self, job_type: JobType[Any, Any] | str, input: Any = None, **options: Any
    ) -> None:
        # start_chains builds thousands of these, so the common spec (a type
        # name and an input, no option) is made in a few dict stores: fields
        # go straight into the instance dict (a frozen dataclass would set
        # each through object.__setattr__), options at their defaults stay on
        # the class, and the item start_chains sends is built here, once.
        d = self.__dict__
        d["job_type"] = job_type
        d["input"] = input
        if type(job_type) is str and 0 < len(job_type) <= _MAX_NAME:
            d["_type_name"] = job_type
            d["_payload"] = input  # serialised once, with the whole batch
        else:
            d["_type_name"] = _type_name_of(job_type)
            d["_payload"] = d["_input_json"] = dump_payload(job_type, input)
        if options:
            self._set_options(**options)
        else:
            payload = d["_payload"]
            # the item in the engine's terms (docs/DESIGN.md, start_chains)
            d["_item"] = (
                {"type_name": d["_type_name"]}
                if payload is None
                else {"type_name": d["_type_name"], "input": payload}
            )

    def _set_options(
        self,
        *,
        id: UUID | None = None,
        schedule_at: datetime | None = None,
        schedule_after: timedelta | None = None,
        blockers: Sequence[UUID] | None = None,
        dedup_key: str | None = None,
        dedup_scope: str = "incomplete",
        dedup_window: timedelta | None = None,
        priority: int = 0,
        trace_context: str | None = None,
    ) -> None:
        _check_delays(schedule_at, schedule_after)
        # no "_item": start_chains checks and converts the options
        self.__dict__.update(
            id=id,
            schedule_at=schedule_at,
            schedule_after=schedule_after,
            blockers=None if blockers is None else tuple(blockers),
            dedup_key=dedup_key,
            dedup_scope=dedup_scope,
            dedup_window=dedup_window,
            priority=priority,
            trace_context=trace_context,
        )

    @property
    def type_name(self) -> str:
        return self.__dict__["_type_name"]  # type: ignore[no-any-return]

    @property
    def input_json(self) -> Any:
        """The input's JSON form, as it will be stored."""
        d = self.__dict__
        if "_input_json" in d:
            return d["_input_json"]
        return to_json_value(self.input)


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


_new_object = object.__new__


def started_chain(values: Sequence[Any]) -> StartedChain:
    """A :class:`StartedChain` from a row ``(id, type_name, status,
    scheduled_at, created_at, deduplicated)`` of ``start_chain(s)``, built
    without the frozen dataclass's ``__init__`` (which sets each field
    through ``object.__setattr__``): the client builds one per item of a
    batch, as psycopg's row maker. A chain is its root job, so ``chain_id``
    is ``id``."""
    chain: StartedChain = _new_object(StartedChain)
    chain.__dict__.update(
        id=values[0],
        chain_id=values[0],
        type_name=values[1],
        status=values[2],
        scheduled_at=values[3],
        created_at=values[4],
        deduplicated=values[5],
    )
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

    def output_as(self, job_type: JobType[Any, O]) -> O:
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
