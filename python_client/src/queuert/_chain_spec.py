"""The items of ``start_chains``: :class:`ChainSpec`, typed like
``start_chain``."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload
from uuid import UUID

from ._job_type import (
    _MAX_NAME,
    JobType,
    _check_delays,
    _type_name_of,
    dump_payload,
    to_json_value,
)

__all__ = ["OPTION_DEFAULTS", "BaseChainSpec", "ChainSpec", "sent_payload", "sent_type_name"]

InT = TypeVar("InT")
I = TypeVar("I")  # noqa: E741 - conventional short name in signatures

class BaseChainSpec:
    """Non-generic base of :class:`ChainSpec`: ``start_chains`` takes a
    sequence of these, so the list gives no type context that would let a
    wrong ``ChainSpec(job_type, input)`` pass mypy."""

    __slots__ = ()


#: the options and their defaults (the engine's, docs/DESIGN.md): a spec
#: built without options leaves their slots empty and reads these
OPTION_DEFAULTS: dict[str, Any] = {
    "id": None,
    "schedule_at": None,
    "schedule_after": None,
    "blockers": None,
    "dedup_key": None,
    "dedup_scope": "incomplete",
    "dedup_window": None,
    "priority": 0,
    "trace_context": None,
}
_setattr = object.__setattr__
_type_name_of_spec = operator.attrgetter("_type_name")
_payload_of = operator.attrgetter("_payload")


@dataclasses.dataclass(frozen=True, init=False)
class ChainSpec(BaseChainSpec, Generic[InT]):
    """One item of :func:`queuert.start_chains`; the same options as
    :func:`queuert.start_chain`. Typed like ``start_chain``: with a JobType,
    mypy checks ``input`` and it is validated here, when the spec is built
    (``input_json`` is what will be stored). With a type *name* the input is
    stored as given and serialised once, with the whole batch."""

    # Slots, no instance dict: a batch builds thousands of specs, and each
    # garbage-collected object they allocate brings the collector's next
    # pass nearer, whose full passes cost in proportion to the whole
    # process's heap (benchmarks/README.md, "the client's cost over its SQL
    # call"). Options never given leave their slots empty and read
    # OPTION_DEFAULTS (__getattr__), so the common spec fills three slots.
    # _plain: set when no option was given (True for a type name, whose
    # spec start_chains serialises as it is; False for a JobType). A
    # JobType's spec also keeps what it sends: _type_name, and _payload (the
    # input validated and dumped).
    __slots__ = (
        "job_type", "input", "id", "schedule_at", "schedule_after", "blockers", "dedup_key",
        "dedup_scope", "dedup_window", "priority", "trace_context",
        "_plain", "_type_name", "_payload", "__weakref__",
    )

    job_type: JobType[InT, Any] | str
    input: InT
    # Options: defaults in OPTION_DEFAULTS (a slot cannot have a class default).
    id: UUID | None
    schedule_at: datetime | None
    schedule_after: timedelta | None
    blockers: tuple[UUID, ...] | None
    dedup_key: str | None
    dedup_scope: str
    dedup_window: timedelta | None
    priority: int
    trace_context: str | None

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
        # name and an input, no option) is made in three slot stores, no
        # other object allocated. An untyped input is kept as given: it is
        # serialised once, with the whole batch.
        _set_job_type(self, job_type)
        _set_input(self, input)
        if type(job_type) is str and 0 < len(job_type) <= _MAX_NAME:
            plain = True
        else:
            plain = False
            _set_type_name(self, _type_name_of(job_type))
            _set_payload(self, dump_payload(job_type, input))
        if options:
            self._set_options(**options)  # no _plain: start_chains adds the options
        else:
            _set_plain(self, plain)

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
        # start_chains checks and converts the options
        for name, value in (
            ("id", id),
            ("schedule_at", schedule_at),
            ("schedule_after", schedule_after),
            ("blockers", None if blockers is None else tuple(blockers)),
            ("dedup_key", dedup_key),
            ("dedup_scope", dedup_scope),
            ("dedup_window", dedup_window),
            ("priority", priority),
            ("trace_context", trace_context),
        ):
            _setattr(self, name, value)

    if not TYPE_CHECKING:  # (mypy would take every attribute for an option)

        def __getattr__(self, name: str) -> Any:
            """An option never given (its slot is empty): its default."""
            try:
                return OPTION_DEFAULTS[name]
            except KeyError:
                raise AttributeError(
                    f"{type(self).__name__!r} object has no attribute {name!r}"
                ) from None

    def __getstate__(self) -> dict[str, Any]:
        # copy and pickle: the filled slots (a frozen dataclass's __setattr__
        # would refuse the default restore)
        state = {}
        for name in self.__slots__:
            if name != "__weakref__":
                try:
                    state[name] = object.__getattribute__(self, name)
                except AttributeError:
                    pass
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            _setattr(self, name, value)

    @property
    def type_name(self) -> str:
        return sent_type_name(self)

    @property
    def input_json(self) -> Any:
        """The input's JSON form, as it will be stored."""
        if type(self.job_type) is str:
            return to_json_value(self.input)
        return _payload_of(self)


# dataclasses.fields() shows the options' defaults, as when they were class
# attributes (a slot cannot have one; nothing generated here reads them)
for _field in dataclasses.fields(ChainSpec):
    if _field.name in OPTION_DEFAULTS:
        _field.default = OPTION_DEFAULTS[_field.name]
del _field

# each slot's setter, past the frozen dataclass's __setattr__ (half the
# cost of object.__setattr__)
_set_job_type, _set_input, _set_plain, _set_type_name, _set_payload = (
    ChainSpec.__dict__[name].__set__ for name in ("job_type", "input", "_plain", "_type_name", "_payload")
)


def sent_type_name(spec: ChainSpec[Any]) -> str:
    """The item's "type_name" as start_chains sends it."""
    job_type = spec.job_type
    return job_type if type(job_type) is str else _type_name_of_spec(spec)


def sent_payload(spec: ChainSpec[Any]) -> Any:
    """The item's "input" as start_chains sends it (a JobType's validated
    and dumped; None: no input)."""
    return spec.input if type(spec.job_type) is str else _payload_of(spec)
