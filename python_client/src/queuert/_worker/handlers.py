"""A registered handler: its function, job type and how it runs."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from queuert.types import JobType


class Handler:
    __slots__ = ("type_name", "fn", "job_type", "is_async", "output_none")

    def __init__(self, type_name: str, fn: Callable[..., Any], job_type: JobType[Any, Any] | None):
        self.type_name = type_name
        self.fn = fn
        self.job_type = job_type
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)
        )
        self.output_none = job_type is None or job_type.output_type is type(None)
