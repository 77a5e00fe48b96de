"""``start_chain``'s common call, sent straight to a psycopg connection.

The common start is a type name (or a JobType) and an input, every option
at its default, with telemetry off, outside a hooks block or inside one
that surely needs no ``queuert.notify = 'none'`` sent first (no broker,
or a session known to have it already: :mod:`queuert._engine_quiet`); a pending
job is reported to the block as the general path reports it. For it the
general path (:mod:`queuert._operations` builds a Call, its Query and its
SQLite twin; :mod:`queuert._execution` runs it; :mod:`queuert._started_rows`
makes the row) costs the client about 15 % more instructions than the raw
``SELECT * FROM queuert.start_chain(...)`` it sends (callgrind,
benchmarks/README.md, "client16s"). Here the same call is one cursor, one
statement whose text is made once per schema, a tuple row (psycopg's C row
maker and its own ``timestamptz`` loader, in the connection's time zone)
and the :class:`~queuert.StartedChain` built from it.

What the general path does that matters here is done the same way:
arguments checked in the same order with the same functions (schema name,
type name, the JobType's validation and serialisation), engine errors
translated, and a call that is its own transaction (autocommit, outside a
transaction block) re-run after a serialization failure or a deadlock, as
:func:`queuert._execution._retrying` does (the two loops are twins). Any
other case returns None and the caller takes the general path, which is
also the one ``tests_py/test_client.py`` reads the statement of.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from psycopg.rows import tuple_row

import pydantic_core

from . import _statements as sql
from ._arguments import json_text
from ._execution import AUTO_RETRIES, _backoff, can_listen
from ._job_type import _MAX_NAME, JobType, _type_name_of, dump_payload
from ._records import StartedChain, new_started_chain
from ._engine_quiet import _quiet_sessions, quiet_known
from ._schema_name import validate_schema_name
from .errors import is_conflict, translate
from .hooks import TransactionHooks, _current
from .telemetry.switch import inactive, meter, tracer

__all__ = ["start_plain", "start_plain_async"]

_current_hooks = _current.get  # hooks.current_hooks without its frame
_to_json = pydantic_core.to_json
_SerializationError = pydantic_core.PydanticSerializationError
_Connection = psycopg.Connection
_AsyncConnection = psycopg.AsyncConnection

# schema -> the statement, for schemas found valid (bounded as _schema_name's)
_statements: dict[str, str] = {}
_STATEMENTS_MAX = 1024


def _no_telemetry() -> bool:
    # inactive() is False while it is unsure (the API imported, not looked
    # at yet): then ask what the general path would get
    return inactive() or (tracer() is None and meter() is None)


def _statement(schema: str) -> str:
    text = sql.start_chain_plain(validate_schema_name(schema))
    if len(_statements) < _STATEMENTS_MAX:
        _statements[schema] = text
    return text


# The common start costs the client a few microseconds a call over its raw
# call, most of it with the caches cold after the round trip (each Python
# frame, each module touched): the usual case (a valid type name, an
# input) is written out here in one frame (benchmarks/README.md,
# "client16c").


def _arguments(schema: str, job_type: JobType[Any, Any] | str, input: Any) -> tuple[str, tuple[str, str | None]]:
    """The statement and its parameters, checked as ``_operations.start_chain``
    checks them (the schema first, then the type and its input)."""
    statement = _statements.get(schema) if type(schema) is str else None
    if statement is None:
        statement = _statement(schema)
    if type(job_type) is str and 0 < len(job_type) <= _MAX_NAME:  # a valid name, inline
        if input is not None:
            try:
                return statement, (job_type, _to_json(input).decode())
            except _SerializationError:
                pass  # json_text says why
        return statement, (job_type, json_text(input))
    return statement, (_type_name_of(job_type), json_text(dump_payload(job_type, input)))


def _started(row: tuple[Any, ...], hooks: TransactionHooks | None) -> StartedChain:
    # (id, type_name, status, created_at, scheduled_at unless the same, deduplicated)
    created = row[3]
    scheduled = row[4]
    started = new_started_chain(row[0], row[1], row[2], created if scheduled is None else scheduled, created, row[5])
    if hooks is not None and row[2] == "pending" and not row[5]:
        hooks.job_ready(row[1])  # as _operations._started_one reports it
    return started


def _plain_hooks(conn: Any, kind: type) -> tuple[bool, TransactionHooks | None]:
    """Whether the common start may go straight to ``conn`` (a ``kind``
    connection, telemetry off, any hooks block's session needing no NOTIFY
    switch), and the hooks block it then reports to."""
    hooks = _current_hooks()
    plain = type(conn) is kind and (inactive() or _no_telemetry()) and (
        # a broker producer's session known quiet: quiet_known's first test, inline
        hooks is None or id(conn) in _quiet_sessions or quiet_known(conn, hooks)
    )
    return plain, hooks


def start_plain(
    conn: Any, schema: str, job_type: JobType[Any, Any] | str, input: Any
) -> StartedChain | None:
    """The common start on a sync psycopg ``Connection``; None when the
    general path must run it (another connection kind, a hooks block that
    must turn the engine's NOTIFY off first, telemetry that may be on). The
    caller checked the options."""
    plain, hooks = _plain_hooks(conn, _Connection)
    if not plain:
        return None
    statement, params = _arguments(schema, job_type, input)
    attempt = 0
    while True:
        try:
            cur = conn.cursor(row_factory=tuple_row)
            cur.execute(statement, params)
            return _started(cur.fetchone(), hooks)
        except psycopg.Error as e:
            new = translate(e)
            if new is not e:
                raise new from e
            attempt += 1
            if not (can_listen(conn) and is_conflict(e) and attempt < AUTO_RETRIES):
                raise
            time.sleep(_backoff(attempt))


async def start_plain_async(
    conn: Any, schema: str, job_type: JobType[Any, Any] | str, input: Any
) -> StartedChain | None:
    """:func:`start_plain` on a psycopg ``AsyncConnection``."""
    plain, hooks = _plain_hooks(conn, _AsyncConnection)
    if not plain:
        return None
    statement, params = _arguments(schema, job_type, input)
    attempt = 0
    while True:
        try:
            cur = conn.cursor(row_factory=tuple_row)
            await cur.execute(statement, params)
            return _started(await cur.fetchone(), hooks)
        except psycopg.Error as e:
            new = translate(e)
            if new is not e:
                raise new from e
            attempt += 1
            if not (can_listen(conn) and is_conflict(e) and attempt < AUTO_RETRIES):
                raise
            await asyncio.sleep(_backoff(attempt))
