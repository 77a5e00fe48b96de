"""queuert: durable job chains inside your own PostgreSQL."""

from __future__ import annotations

import importlib
from typing import Any

from .client import (
    cancel_chains,
    complete_chain,
    delete_chains,
    get_chain,
    list_chains,
    retry_jobs,
    start_chain,
    start_chains,
    trigger_jobs,
    wait_for_chain,
)
from .errors import (
    ChainCancelledError,
    ChainFailedError,
    ChainHasDependentsError,
    ChainNotFoundError,
    ChainWaitError,
    ChainWaitTimeout,
    InvalidArgumentError,
    InvalidJobStatusError,
    JobNotFoundError,
    JobTakenError,
    PayloadValidationError,
    QueuertError,
    retry_on_conflict,
    translate,
    translate_errors,
)
from .types import (
    Chain,
    ChainPage,
    ChainSpec,
    CompletedJob,
    Continuation,
    ContinuedJob,
    Job,
    JobType,
    RetryAt,
    StartedChain,
    continue_with,
)

__version__ = "0.1.0"

# ---------------------------------------------------------------------------
# BEGIN worker/notify/hooks exports (owned by the worker helper).
# Names exported lazily from modules that other parts of the package provide;
# each is imported on first access, so importing queuert never fails while a
# module is absent. Replace an entry with a direct import once its module
# exists if you prefer eager, type-checked exports.
_LAZY_EXPORTS: dict[str, str] = {
    "Worker": "queuert.worker",
    "transaction_hooks": "queuert.hooks",
    "current_hooks": "queuert.hooks",
}
# END worker/notify/hooks exports
# ---------------------------------------------------------------------------


def __getattr__(name: str) -> Any:
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'queuert' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Chain",
    "ChainCancelledError",
    "ChainFailedError",
    "ChainHasDependentsError",
    "ChainNotFoundError",
    "ChainPage",
    "ChainSpec",
    "ChainWaitError",
    "ChainWaitTimeout",
    "CompletedJob",
    "Continuation",
    "ContinuedJob",
    "InvalidArgumentError",
    "InvalidJobStatusError",
    "Job",
    "JobNotFoundError",
    "JobTakenError",
    "JobType",
    "PayloadValidationError",
    "QueuertError",
    "RetryAt",
    "StartedChain",
    "cancel_chains",
    "complete_chain",
    "continue_with",
    "delete_chains",
    "get_chain",
    "list_chains",
    "retry_jobs",
    "retry_on_conflict",
    "start_chain",
    "start_chains",
    "translate",
    "translate_errors",
    "trigger_jobs",
    "wait_for_chain",
    *_LAZY_EXPORTS,
]
