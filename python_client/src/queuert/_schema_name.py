"""The one rule for schema names, shared by the client, the worker, the
notifiers and the migrator.

The name is spliced into SQL text and into channel names such as
``<schema>_job_ready``, so it is held to ``[a-z_][a-z0-9_]{0,39}``: such a
name never needs quoting, and every channel name built from it fits in
PostgreSQL's 63 bytes.
"""

from __future__ import annotations

import re

from .errors import InvalidSchemaNameError

__all__ = ["SCHEMA_NAME_RE", "validate_schema_name"]

SCHEMA_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,39}")

# Names already found valid: every client call checks its schema, and a set
# lookup is cheaper than the regex. Bounded: an application has few schemas.
_valid: set[str] = set()
_VALID_MAX = 1024


def validate_schema_name(schema: str) -> str:
    """``schema`` itself, or :class:`~queuert.errors.InvalidSchemaNameError`
    (both a ``MigrationError`` and an ``InvalidArgumentError``)."""
    if type(schema) is str and schema in _valid:
        return schema
    if not isinstance(schema, str) or not SCHEMA_NAME_RE.fullmatch(schema):
        raise InvalidSchemaNameError(
            f"invalid schema name {schema!r}: it must match [a-z_][a-z0-9_]{{0,39}} "
            "(lower-case letters, digits and underscores, at most 40 characters, "
            "not starting with a digit)"
        )
    if len(_valid) < _VALID_MAX:
        _valid.add(schema)
    return schema
