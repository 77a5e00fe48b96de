"""Typed job types, continuations, retry requests and the client's records.

A job type is declared once, with the Python types of its input and output::

    @dataclass
    class WelcomeInput:
        user_id: int

    class EmailSent(pydantic.BaseModel):
        message_id: str

    welcome = JobType("send-welcome-email", input=WelcomeInput, output=EmailSent,
                      continues_with=("follow-up",))

Input and output may be pydantic models, dataclasses, ``TypedDict``s (from
``typing_extensions`` before Python 3.12, a pydantic rule) or any plain type
pydantic understands (``int``, ``list[str]``, ``datetime`` ...). All of them go
through one code path, pydantic's ``TypeAdapter``: values are validated before
anything is written, serialised to JSON for the ``jsonb`` column, and parsed
back into the declared type when a worker reads them.

``JobType`` is generic in its input and output (``JobType[WelcomeInput,
EmailSent]``), so mypy checks ``start_chain(conn, welcome, WelcomeInput(...))``
and ``continue_with(welcome, ...)`` against the declaration.
"""

from __future__ import annotations

from ._chain_spec import BaseChainSpec, ChainSpec
from ._continuation import Continuation, RetryAt, continue_with
from ._job_type import ContinuesWith, JobType, dump_payload, to_json_value
from ._admin_records import FiredTick, JobTypePolicy, PruneResult, Schedule
from ._records import (
    Chain,
    ChainPage,
    CompletedJob,
    ContinuedJob,
    Job,
    StartedChain,
    started_chain,
)

__all__ = [
    "Chain",
    "ContinuesWith",
    "BaseChainSpec",
    "ChainPage",
    "ChainSpec",
    "CompletedJob",
    "Continuation",
    "ContinuedJob",
    "FiredTick",
    "Job",
    "JobType",
    "JobTypePolicy",
    "PruneResult",
    "RetryAt",
    "Schedule",
    "StartedChain",
    "continue_with",
    "dump_payload",
    "started_chain",
    "to_json_value",
]

# The declarations live in one module per concern: _job_type (JobType and
# the JSON form of payloads), _continuation (what a handler returns besides
# an output), _chain_spec (start_chains items), _records (the client's
# results). This module is the public face.
