"""Job types: a name with the Python types of its input and output.

One code path for every kind of declared type (pydantic models,
dataclasses, TypedDicts, plain types): pydantic's ``TypeAdapter`` validates
a value before anything is written, serialises it to JSON for the ``jsonb``
column, and parses it back for the handler (see :mod:`queuert.types`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar, Union, overload
from uuid import UUID

import pydantic
import pydantic_core

from .errors import InvalidArgumentError, PayloadValidationError

__all__ = ["ContinuesWith", "JobType", "dump_payload", "to_json_value"]

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

class _Continuation(Protocol):
    """What :meth:`JobType.check_continuation` reads of a Continuation."""

    @property
    def type_name(self) -> str: ...


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

    def check_continuation(self, continuation: _Continuation) -> None:
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
