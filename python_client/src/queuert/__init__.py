"""queuert: durable job chains inside your own PostgreSQL."""

from __future__ import annotations

import importlib
from typing import Any

from .client import (
    cancel_chains,
    complete_chain,
    delete_chains,
    delete_schedule,
    get_chain,
    list_chains,
    list_schedules,
    prune,
    retry_jobs,
    set_job_type,
    set_schedule,
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
    InvalidSchemaNameError,
    JobNotFoundError,
    JobTakenError,
    MigrationError,
    PayloadValidationError,
    QueuertError,
    retry_on_conflict,
    translate,
    translate_errors,
)
from .types import (
    BaseChainSpec,
    Chain,
    ChainPage,
    ChainSpec,
    CompletedJob,
    Continuation,
    ContinuedJob,
    FiredTick,
    Job,
    JobType,
    JobTypePolicy,
    PruneResult,
    RetryAt,
    Schedule,
    StartedChain,
    continue_with,
)

__version__ = "0.1.0"

# ---------------------------------------------------------------------------
# BEGIN worker/notify/hooks exports (owned by the worker helper).
from .hooks import TransactionHooks, current_hooks, transaction_hooks  # noqa: E402
from .job import Blocker, JobContext, LeaseLost  # noqa: E402
from .notify import (  # noqa: E402
    InProcessNotifier,
    Notifier,
    NotifyEvent,
    NullNotifier,
    PostgresNotifier,
    notifier_from_url,
)
from .worker import Worker, WorkerStats, run_worker_cli  # noqa: E402

_LAZY_EXPORTS: dict[str, str] = {}
_WORKER_EXPORTS = [
    "Blocker",
    "InProcessNotifier",
    "JobContext",
    "LeaseLost",
    "Notifier",
    "NotifyEvent",
    "NullNotifier",
    "PostgresNotifier",
    "TransactionHooks",
    "Worker",
    "WorkerStats",
    "current_hooks",
    "notifier_from_url",
    "run_worker_cli",
    "transaction_hooks",
]
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
    "BaseChainSpec",
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
    "FiredTick",
    "InvalidArgumentError",
    "InvalidJobStatusError",
    "InvalidSchemaNameError",
    "Job",
    "JobNotFoundError",
    "JobTakenError",
    "JobType",
    "JobTypePolicy",
    "MigrationError",
    "PayloadValidationError",
    "PruneResult",
    "QueuertError",
    "RetryAt",
    "Schedule",
    "StartedChain",
    "cancel_chains",
    "complete_chain",
    "continue_with",
    "delete_chains",
    "delete_schedule",
    "get_chain",
    "list_chains",
    "list_schedules",
    "prune",
    "retry_jobs",
    "retry_on_conflict",
    "set_job_type",
    "set_schedule",
    "start_chain",
    "start_chains",
    "translate",
    "translate_errors",
    "trigger_jobs",
    "wait_for_chain",
    *_WORKER_EXPORTS,
]
