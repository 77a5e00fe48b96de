"""Exceptions raised by queuert, and the translation of engine SQLSTATEs.

The engine raises its errors with a SQLSTATE of class ``QU``, a human message
naming the job or chain, and a DETAIL of the form ``job_id=<uuid>`` or
``chain_id=<uuid>``, possibly followed by ``, key=value`` pairs.
:func:`translate` turns such a driver error into one exception class per
SQLSTATE, all under :class:`QueuertError`, carrying the ids parsed from DETAIL.

:func:`translate` accepts errors from psycopg 3, psycopg2 (``pgcode``) and
SQLAlchemy (``DBAPIError.orig``), so code that calls the SQL API through
another driver can still get typed exceptions.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
import re
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, ClassVar, TypeVar, overload
from uuid import UUID

__all__ = [
    "CONFLICT_SQLSTATES",
    "ChainCancelledError",
    "ChainFailedError",
    "ChainHasDependentsError",
    "ChainNotFoundError",
    "ChainWaitError",
    "ChainWaitTimeout",
    "InvalidArgumentError",
    "InvalidJobStatusError",
    "JobNotFoundError",
    "InvalidSchemaNameError",
    "JobTakenError",
    "MigrationError",
    "PayloadValidationError",
    "QueuertError",
    "is_conflict",
    "parse_detail",
    "retry_on_conflict",
    "sqlstate_of",
    "translate",
    "translate_errors",
]


class QueuertError(Exception):
    """Base class of every queuert error.

    ``sqlstate`` is the engine's SQLSTATE (``QU001`` ...) when the error came
    from the database, ``None`` for errors raised by the Python client itself.
    ``job_id`` / ``chain_id`` name the job or chain concerned when known;
    ``details`` holds every ``key=value`` pair of the engine's DETAIL.
    """

    default_sqlstate: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        job_id: UUID | None = None,
        chain_id: UUID | None = None,
        detail: str | None = None,
        details: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate if sqlstate is not None else self.default_sqlstate
        self.job_id = job_id
        self.chain_id = chain_id
        self.detail = detail
        self.details: dict[str, str] = dict(details or {})

    def __str__(self) -> str:
        if self.detail:
            return f"{self.message} ({self.detail})"
        return self.message


class JobNotFoundError(QueuertError):
    """QU001: the job does not exist."""

    default_sqlstate = "QU001"


class ChainNotFoundError(QueuertError):
    """QU002: the chain does not exist (also: a blocker that does not exist)."""

    default_sqlstate = "QU002"


class InvalidJobStatusError(QueuertError):
    """QU003: the job's status does not allow this operation."""

    default_sqlstate = "QU003"


class JobTakenError(QueuertError):
    """QU004: the job is held by another worker, or the attempt is stale."""

    default_sqlstate = "QU004"


class ChainHasDependentsError(QueuertError):
    """QU005: a job outside the set has one of these chains as a blocker."""

    default_sqlstate = "QU005"


class InvalidArgumentError(QueuertError, ValueError):
    """QU006: an invalid argument (raised by the engine or by the client)."""

    default_sqlstate = "QU006"


class MigrationError(Exception):
    """The database could not be migrated; nothing was changed
    (:func:`queuert.migrate.migrate`)."""


class InvalidSchemaNameError(MigrationError, InvalidArgumentError):
    """A schema name that does not match ``[a-z_][a-z0-9_]{0,39}``. The one
    validator (``queuert._schema_name``) raises it for the client, the
    worker, the notifiers and the migrator alike, before anything is sent:
    catch it as an ``InvalidArgumentError`` or as a ``MigrationError``."""


class PayloadValidationError(QueuertError, ValueError):
    """A job input or output does not match its declared type.

    Raised by the client *before* anything is written (``stored=False``), and
    when a job's stored input or output no longer parses with the current
    declaration (``stored=True``); a worker fails the attempt with it.
    The pydantic ``ValidationError`` is chained as ``__cause__``.
    """

    def __init__(
        self,
        message: str,
        *,
        type_name: str,
        kind: str,
        stored: bool = False,
        job_id: UUID | None = None,
        chain_id: UUID | None = None,
    ) -> None:
        super().__init__(message, job_id=job_id, chain_id=chain_id)
        self.type_name = type_name
        self.kind = kind
        self.stored = stored


class ChainWaitError(QueuertError):
    """Base of the errors :func:`queuert.wait_for_chain` raises while waiting."""


class ChainWaitTimeout(ChainWaitError, TimeoutError):
    """The chain did not complete within the timeout."""


class ChainFailedError(ChainWaitError):
    """The awaited chain's current job is ``failed`` (attempts exhausted)."""


class ChainCancelledError(ChainWaitError):
    """The awaited chain was cancelled."""


_BY_SQLSTATE: dict[str, type[QueuertError]] = {
    cls.default_sqlstate: cls
    for cls in (
        JobNotFoundError,
        ChainNotFoundError,
        InvalidJobStatusError,
        JobTakenError,
        ChainHasDependentsError,
        InvalidArgumentError,
    )
}

#: SQLSTATEs after which re-running the whole transaction is the right answer:
#: serialization failure (a dedup race under REPEATABLE READ/SERIALIZABLE) and
#: deadlock (cancel/delete racing a completion).
CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})

_PAIR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)=([^,]*)")


def parse_detail(detail: str | None) -> dict[str, str]:
    """Parse an engine DETAIL ``job_id=<uuid>, key=value, ...`` into a dict."""
    if not detail:
        return {}
    out: dict[str, str] = {}
    for part in detail.split(","):
        m = _PAIR.fullmatch(part.strip()) if part.strip() else None
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _uuid_or_none(value: str | None) -> UUID | None:
    if not value:
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def _unwrap(exc: BaseException) -> BaseException:
    """The driver exception behind a SQLAlchemy ``DBAPIError``, if any."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException):
        return orig
    return exc


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg 3, psycopg2 or SQLAlchemy-wrapped error."""
    inner = _unwrap(exc)
    code = getattr(inner, "sqlstate", None) or getattr(inner, "pgcode", None)
    return code if isinstance(code, str) else None


def is_conflict(exc: BaseException) -> bool:
    """True for a serialization failure (40001) or a deadlock (40P01)."""
    return sqlstate_of(exc) in CONFLICT_SQLSTATES


def _message_and_detail(inner: BaseException) -> tuple[str, str | None]:
    diag = getattr(inner, "diag", None)
    message = getattr(diag, "message_primary", None)
    detail = getattr(diag, "message_detail", None)
    if not message:  # psycopg2 without diag: first line of the server text
        text = (getattr(inner, "pgerror", None) or str(inner)).strip()
        message = re.sub(r"^ERROR:\s*", "", text.splitlines()[0] if text else "")
    return str(message), (str(detail) if detail else None)


def translate(exc: BaseException) -> BaseException:
    """Map a driver error carrying a ``QU0xx`` SQLSTATE to its queuert class.

    Returns ``exc`` unchanged when it is not an engine error. Use as
    ``raise translate(e) from e``.
    """
    if isinstance(exc, QueuertError):
        return exc
    inner = _unwrap(exc)
    code = sqlstate_of(inner)
    cls = _BY_SQLSTATE.get(code) if code else None
    if cls is None:
        return exc
    message, detail = _message_and_detail(inner)
    details = parse_detail(detail)
    return cls(
        message,
        sqlstate=code,
        job_id=_uuid_or_none(details.get("job_id")),
        chain_id=_uuid_or_none(details.get("chain_id")),
        detail=detail,
        details=details,
    )


F = TypeVar("F", bound=Callable[..., Any])


class translate_errors:
    """Context manager and decorator: re-raise engine errors as queuert ones.

    Works as ``with translate_errors():``, ``async with translate_errors():``
    and as a decorator of plain or ``async`` functions. The original driver
    error is kept as ``__cause__``.
    """

    def __enter__(self) -> translate_errors:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        new = translate(exc)
        if new is not exc:
            raise new from exc

    async def __aenter__(self) -> translate_errors:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                with translate_errors():
                    return await fn(*args, **kwargs)

            return awrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with translate_errors():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


T = TypeVar("T")


def _delays(attempts: int, base_delay: float, max_delay: float) -> Iterable[float]:
    for i in range(attempts - 1):
        yield random.uniform(0, min(max_delay, base_delay * (2**i)))


@overload
def retry_on_conflict(
    fn: F, *, attempts: int = ..., base_delay: float = ..., max_delay: float = ...
) -> F: ...


@overload
def retry_on_conflict(
    fn: None = None, *, attempts: int = ..., base_delay: float = ..., max_delay: float = ...
) -> Callable[[F], F]: ...


def retry_on_conflict(
    fn: Callable[..., Any] | None = None,
    *,
    attempts: int = 5,
    base_delay: float = 0.01,
    max_delay: float = 0.5,
) -> Any:
    """Re-run a whole transaction function after 40001 or 40P01.

    Decorate a function (plain or ``async``) that runs one *complete*
    transaction, from begin to commit, e.g. one ``with conn.transaction():``
    block on an autocommit connection, or ``with engine.begin():``. When it
    raises a serialization failure (40001: a dedup race under REPEATABLE READ
    or SERIALIZABLE) or a deadlock (40P01: cancel/delete racing a completion),
    the transaction has been rolled back, so it is simply called again, after a
    short jittered exponential pause, up to ``attempts`` times in all. Any other
    error, or the last conflict, propagates.

    Do not decorate a function that runs *inside* a transaction it does not
    own: after the error that transaction is aborted and only its owner can
    roll it back.
    """

    def decorate(f: F) -> F:
        if attempts < 1:
            raise InvalidArgumentError("attempts must be >= 1")
        if inspect.iscoroutinefunction(f):

            @functools.wraps(f)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                delays = iter(_delays(attempts, base_delay, max_delay))
                while True:
                    try:
                        return await f(*args, **kwargs)
                    except Exception as e:
                        if not is_conflict(e):
                            raise
                        delay = next(delays, None)
                        if delay is None:
                            raise
                        await asyncio.sleep(delay)

            return awrapper  # type: ignore[return-value]

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            delays = iter(_delays(attempts, base_delay, max_delay))
            while True:
                try:
                    return f(*args, **kwargs)
                except Exception as e:
                    if not is_conflict(e):
                        raise
                    delay = next(delays, None)
                    if delay is None:
                        raise
                    time.sleep(delay)

        return wrapper  # type: ignore[return-value]

    if fn is not None:
        return decorate(fn)
    return decorate
