"""``wait_for_chain``, written once for both clients.

Besides queries the operation yields instructions to sleep, to wait for a
notification, and a cleanup statement (:mod:`queuert._instructions`); the
drivers in :mod:`queuert._execution` perform them.
"""

from __future__ import annotations

import sqlite3
import time
from functools import partial
from typing import Any
from uuid import UUID

from . import _statements as sql
from ._arguments import uuid_of
from ._instructions import CanListen, Cleanup, Op, Query, Sleep, Steps, WaitNotify
from ._schema_name import validate_schema_name
from .errors import (
    ChainCancelledError,
    ChainFailedError,
    ChainNotFoundError,
    ChainWaitTimeout,
    InvalidArgumentError,
)
from ._records import Chain
from ._sqlite import client_calls as lite

__all__ = ["wait_for_chain", "wait_verdict"]


def wait_verdict(
    rows: list[dict[str, Any]],
    chain_id: UUID,
    *,
    in_transaction: bool,
    raise_on_failure: bool,
) -> Chain | None:
    """The finished chain, None to keep waiting, or an exception."""
    if not rows:
        raise ChainNotFoundError(f"chain {chain_id} not found", chain_id=chain_id)
    row = rows[0]
    chain = Chain.from_row(row)
    if chain.status == "completed":
        return chain
    if chain.status == "cancelled":
        raise ChainCancelledError(
            f"chain {chain_id} was cancelled", chain_id=chain_id, job_id=chain.current_job_id
        )
    if chain.status == "failed" and raise_on_failure:
        raise ChainFailedError(
            f"chain {chain_id} failed at job {chain.current_job_id} "
            f"({chain.current_type_name}): {row.get('last_attempt_error')}",
            chain_id=chain_id,
            job_id=chain.current_job_id,
        )
    if in_transaction and row["isolation"] != "read committed":
        raise InvalidArgumentError(
            f"wait_for_chain inside a {str(row['isolation']).upper()} transaction would "
            "never see the chain complete; call it outside a transaction (autocommit) "
            "or in READ COMMITTED",
            chain_id=chain_id,
        )
    return None


def wait_for_chain(
    schema: str,
    chain_id: UUID | str,
    timeout: float,
    *,
    poll_interval: float,
    raise_on_failure: bool,
) -> Steps[Chain]:
    """Poll inside the caller's transaction, or, on an autocommit connection
    outside a transaction block, LISTEN and re-check on each matching
    notification, falling back to polling. On SQLite (no LISTEN) poll, each
    poll a read of its own, outside any transaction."""
    s = validate_schema_name(schema)
    cid = uuid_of(chain_id, "chain_id")
    if timeout < 0 or poll_interval <= 0:
        raise InvalidArgumentError("timeout must be >= 0 and poll_interval > 0")
    probe = Query(sql.wait_probe(s), {"chain_id": cid})
    channel = f"{s}_chain_completed"

    def timed_out() -> ChainWaitTimeout:
        return ChainWaitTimeout(
            f"chain {cid} did not complete within {timeout:g} s", chain_id=cid
        )

    def poll_only() -> Op[Chain]:
        deadline = time.monotonic() + timeout
        while True:
            rows = yield probe
            chain = wait_verdict(rows, cid, in_transaction=True, raise_on_failure=raise_on_failure)
            if chain is not None:
                return chain
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise timed_out()
            yield Sleep(min(poll_interval, remaining))

    def listening() -> Op[Chain]:
        deadline = time.monotonic() + timeout
        rows = yield Query(sql.IS_LISTENING, {"ch": channel})
        was_listening = bool(rows[0]["listening"])
        if not was_listening:
            yield Query(f"LISTEN {channel}", {})
        try:
            while True:
                rows = yield probe
                chain = wait_verdict(
                    rows, cid, in_transaction=False, raise_on_failure=raise_on_failure
                )
                if chain is not None:
                    return chain
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise timed_out()
                # a notification is a hint: re-check on it, or after poll_interval
                yield WaitNotify(channel, str(cid), min(poll_interval, remaining))
        finally:
            if not was_listening:
                yield Cleanup(Query(f"UNLISTEN {channel}", {}))

    def op() -> Op[Chain]:
        if (yield CanListen()):
            return (yield from listening())
        return (yield from poll_only())

    lite_probe = partial(lite.wait_probe, s, cid)

    def lite_polling() -> Op[Chain]:
        if (yield _in_transaction):
            # SQLite reads one snapshot per transaction (and a transaction
            # that wrote holds the write lock the chain's completion needs)
            raise InvalidArgumentError(
                "wait_for_chain inside an SQLite transaction would never see the chain "
                "complete; call it outside a transaction (commit first)",
                chain_id=cid,
            )
        deadline = time.monotonic() + timeout
        while True:
            rows = yield lite_probe
            chain = wait_verdict(rows, cid, in_transaction=False, raise_on_failure=raise_on_failure)
            if chain is not None:
                return chain
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise timed_out()
            yield Sleep(min(poll_interval, remaining))

    return Steps(op, lite_polling)


def _in_transaction(conn: sqlite3.Connection) -> bool:
    return conn.in_transaction
