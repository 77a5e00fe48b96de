"""Report what a caller's transaction did only once it is known to commit.

With a :func:`queuert.transaction_hooks` block active, ``on_commit`` runs
after the block's transaction committed and ``on_rollback`` if it exits with
an exception (the transaction rolled back). Without one there is no way to
learn the outcome (psycopg has no commit callback): ``on_commit`` runs at
once, as for an autocommit call, which is its own transaction and has
committed when it returns. docs/observability.md says to wrap the
transaction in a hooks block for exact reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..hooks import current_hooks

__all__ = ["after_transaction"]


def after_transaction(on_commit: Callable[[], Any], on_rollback: Callable[[], Any]) -> None:
    hooks = current_hooks()
    if hooks is None:
        on_commit()
        return
    hooks.add(on_commit)
    hooks.on_rollback(on_rollback)
