"""Structured fields for the worker's log records (``logger.x(..., extra=...)``).

A JSON formatter or the OpenTelemetry logging bridge picks them up as record
attributes: the job and chain ids, the type, the attempt and the worker id.
The bridge takes the trace and span id from the current context, where the
worker's attempt span is while the handler runs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["job_log_fields"]


def job_log_fields(job: Any, worker_id: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "job_id": str(job.id),
        "chain_id": str(job.chain_id),
        "type_name": job.type_name,
        "attempt": job.attempt,
        "worker_id": worker_id,
    }
    return fields
