"""The dashboard's actions, each one call of the engine's public API through
queuert.aio (trigger_jobs, retry_jobs, cancel_chains, delete_chains): the
dashboard never writes a row itself.

A refusal comes back as :class:`ActionError` with the HTTP status it maps
to; a QU005 refusal carries the chains that wait on the set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg

from .. import aio
from ..hooks import transaction_hooks
from ..notify.base import Notifier
from ..errors import (
    ChainHasDependentsError,
    ChainNotFoundError,
    InvalidArgumentError,
    InvalidJobStatusError,
    JobNotFoundError,
    JobTakenError,
    QueuertError,
)
from .queries import AsyncConn, ChainFilter, Queries, Row

ACTIONS = ("trigger", "retry", "cancel", "delete")
BULK_RETRY_LIMIT = 1000


@dataclass
class ActionResult:
    action: str
    ids: list[UUID]
    message: str
    more: bool = False


@dataclass
class ActionError(Exception):
    """An action the engine (or the database) refused; nothing changed."""

    status_code: int
    code: str
    message: str
    sqlstate: str | None = None
    dependents: list[Row] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


def _status_for(exc: QueuertError) -> tuple[int, str]:
    if isinstance(exc, (JobNotFoundError, ChainNotFoundError)):
        return 404, "not_found"
    if isinstance(exc, ChainHasDependentsError):
        return 409, "has_dependents"
    if isinstance(exc, (InvalidJobStatusError, JobTakenError)):
        return 409, "wrong_status"
    if isinstance(exc, InvalidArgumentError):
        return 400, "invalid_argument"
    return 409, "refused"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class Actions:
    """``notifier``: publishes what an action made ready after it commits
    (each action is one autocommit statement; None: the engine's NOTIFY only)."""

    def __init__(self, queries: Queries, notifier: Notifier | None = None) -> None:
        self.queries = queries
        self.schema = queries.schema
        self.notifier = notifier

    async def run(
        self, conn: AsyncConn, action: str, ids: list[UUID], *, cascade: bool = False
    ) -> ActionResult:
        """trigger / retry take job ids; cancel / delete take chain ids."""
        if not ids:
            raise ActionError(400, "invalid_argument", f"{action}: nothing selected")
        try:
            async with transaction_hooks(self.notifier):
                done = await self._call(conn, action, ids, cascade)
        except ChainHasDependentsError as exc:
            # The refusal names one waiting job; list every waiting chain.
            dependents = await self.queries.dependents(conn, ids, cascade)
            raise ActionError(
                409,
                "has_dependents",
                f"cannot {action} {_plural(len(ids), 'chain')}: other chains wait on "
                f"{'them' if len(ids) > 1 else 'it'} (nothing was changed)",
                exc.sqlstate,
                dependents,
            ) from exc
        except QueuertError as exc:
            status, code = _status_for(exc)
            raise ActionError(status, code, f"{exc.message} (nothing was changed)", exc.sqlstate) from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ActionError(
                403, "forbidden", f"the dashboard's database role may not {action}: {exc}", "42501"
            ) from exc
        noun = "job" if action in ("trigger", "retry") else "chain"
        past = {"trigger": "triggered", "retry": "retried", "cancel": "cancelled", "delete": "deleted"}
        return ActionResult(action, done, f"{past[action].capitalize()} {_plural(len(done), noun)}")

    async def _call(self, conn: AsyncConn, action: str, ids: list[UUID], cascade: bool) -> list[UUID]:
        if action == "trigger":
            return await aio.trigger_jobs(conn, ids, schema=self.schema)
        if action == "retry":
            return await aio.retry_jobs(conn, ids, schema=self.schema)
        if action == "cancel":
            return await aio.cancel_chains(conn, ids, cascade=cascade, schema=self.schema)
        if action == "delete":
            return await aio.delete_chains(conn, ids, cascade=cascade, schema=self.schema)
        raise ActionError(404, "unknown_action", f"unknown action {action!r}")

    async def retry_failed(self, conn: AsyncConn, flt: ChainFilter, limit: int) -> ActionResult:
        """Retries the failed chains matching the filter's type and creation
        range, most recent failure first, at most ``limit`` in one call."""
        rows = await self.queries.failures(
            conn,
            chain_type=flt.chain_type,
            created_from=flt.created_from,
            created_before=flt.created_before,
            limit=limit + 1,
        )
        ids = [r["job_id"] for r in rows[:limit]]
        if not ids:
            return ActionResult("retry", [], "No failed chains match")
        result = await self.run(conn, "retry", ids)
        result.more = len(rows) > limit
        if result.more:
            result.message += f"; more failed chains match: run it again for the next {limit}"
        return result


def json_error(err: ActionError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.sqlstate:
        body["sqlstate"] = err.sqlstate
    if err.dependents:
        body["dependents"] = err.dependents
    return {"error": body}
