"""Attribute names: the OpenTelemetry messaging conventions where they fit,
``queuert.*`` for the rest. One place, so spans and metrics agree."""

from __future__ import annotations

__all__ = [
    "ATTEMPT",
    "BLOCKER_CHAIN_ID",
    "BLOCKER_COMPLETED_AT",
    "BLOCKERS",
    "CHAIN_COMPLETED",
    "CHAIN_ID",
    "CHAIN_TYPE",
    "DEDUPLICATED",
    "DEPENDENT_READY",
    "DESTINATION",
    "ERROR_TYPE",
    "JOB_STATUS",
    "LAST_ATTEMPT_ERROR",
    "LINK_KIND",
    "LOST_REASON",
    "MESSAGE_ID",
    "OPERATION_NAME",
    "OPERATION_TYPE",
    "OUTCOME",
    "RETRY_AT",
    "ROLLED_BACK",
    "SYSTEM",
    "SYSTEM_NAME",
    "WORKER_ID",
    "WILL_RETRY",
    "WORKER_MODE",
]

SYSTEM = "messaging.system"
SYSTEM_NAME = "queuert"
OPERATION_TYPE = "messaging.operation.type"  # create | process | settle
OPERATION_NAME = "messaging.operation.name"  # start_chain, continue_with, complete ...
DESTINATION = "messaging.destination.name"  # the job type
MESSAGE_ID = "messaging.message.id"  # the job id
ERROR_TYPE = "error.type"

CHAIN_ID = "queuert.chain.id"
CHAIN_TYPE = "queuert.chain.type"
ATTEMPT = "queuert.attempt"
WORKER_ID = "queuert.worker.id"
WORKER_MODE = "queuert.worker.mode"  # staged | atomic
JOB_STATUS = "queuert.job.status"  # the created job's status: pending | blocked
OUTCOME = "queuert.outcome"  # completed | continued | failed | lost
RETRY_AT = "queuert.retry_at"  # ISO time of the next attempt after a failure
WILL_RETRY = "queuert.will_retry"  # a failed attempt's job is pending again
LAST_ATTEMPT_ERROR = "queuert.last_attempt_error"  # a retried attempt: why the previous one ended
LOST_REASON = "queuert.lost.reason"
CHAIN_COMPLETED = "queuert.chain.completed"
DEDUPLICATED = "queuert.deduplicated"
BLOCKERS = "queuert.blockers"  # chain ids a created job waits on
ROLLED_BACK = "queuert.rolled_back"

# span links say why they exist
# continues | deduplicated_to | blocker | blocker_completion | waiting
LINK_KIND = "queuert.link.kind"
BLOCKER_CHAIN_ID = "queuert.blocker.chain_id"
BLOCKER_COMPLETED_AT = "queuert.blocker.completed_at"
# a resolve span: the waiting job has no open blocker left (it is pending)
DEPENDENT_READY = "queuert.dependent.ready"
