"""The items of ``start_chains``: :class:`ChainSpec`, typed like
``start_chain``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, overload
from uuid import UUID

from ._job_type import (
    _MAX_NAME,
    JobType,
    _check_delays,
    _type_name_of,
    dump_payload,
    to_json_value,
)

__all__ = ["BaseChainSpec", "ChainSpec"]

InT = TypeVar("InT")
I = TypeVar("I")  # noqa: E741 - conventional short name in signatures

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
        # name and an input, no option) is made in three dict stores: fields
        # go straight into the instance dict (a frozen dataclass would set
        # each through object.__setattr__), options at their defaults stay on
        # the class, and the item start_chains sends (the engine's terms,
        # docs/DESIGN.md) is built here, once. An untyped input goes into it
        # as given: it is serialised once, with the whole batch.
        d = self.__dict__
        d["job_type"] = job_type
        d["input"] = input
        if type(job_type) is str and 0 < len(job_type) <= _MAX_NAME:
            item = {"type_name": job_type} if input is None else {"type_name": job_type, "input": input}
        else:
            name = _type_name_of(job_type)
            payload = d["_input_json"] = dump_payload(job_type, input)
            item = {"type_name": name} if payload is None else {"type_name": name, "input": payload}
        if options:
            # "_base" instead of "_item": start_chains adds the options
            d["_base"] = item
            self._set_options(**options)
        else:
            d["_item"] = item

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
        d = self.__dict__
        return (d["_item"] if "_item" in d else d["_base"])["type_name"]  # type: ignore[no-any-return]

    @property
    def input_json(self) -> Any:
        """The input's JSON form, as it will be stored."""
        d = self.__dict__
        if "_input_json" in d:
            return d["_input_json"]
        return to_json_value(self.input)
