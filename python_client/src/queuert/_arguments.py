"""Checking and converting the client's arguments before anything is sent.

Every refusal here is an :class:`~queuert.errors.InvalidArgumentError`
(QU006, as the engine would say) raised before the database sees anything.
Also the JSON text the client sends, and the ``list_chains`` cursor.
"""

from __future__ import annotations

import base64
import binascii
import operator
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pydantic_core
from pydantic_core import core_schema

from .errors import InvalidArgumentError
from ._chain_spec import BaseChainSpec, ChainSpec, sent_payload, sent_type_name
from ._job_type import to_json_value

__all__ = [
    "batch_json",
    "chain_item",
    "chain_items",
    "check_priority",
    "decode_cursor",
    "encode_cursor",
    "json_text",
    "plain_batch_json",
    "millis",
    "uuid_of",
    "uuids_of",
]


#: set on a ChainSpec built without options: True for a type name (_chain_spec)
_plain_of = operator.attrgetter("_plain")
_job_type_of = operator.attrgetter("job_type")
_input_of = operator.attrgetter("input")


def uuid_of(value: UUID | str, what: str) -> UUID:
    if type(value) is UUID:
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidArgumentError(f"{what} is not a UUID: {value!r}") from None


def uuids_of(values: Iterable[UUID | str] | None, what: str) -> list[UUID] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes, UUID)):
        raise InvalidArgumentError(f"{what} must be a sequence of UUIDs, got {values!r}")
    return [uuid_of(v, what) for v in values]


def millis(td: timedelta | None) -> int | None:
    return None if td is None else round(td / timedelta(milliseconds=1))


def check_priority(priority: int | None) -> None:
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise InvalidArgumentError(f"priority must be an int, got {priority!r}")


def json_text(value: Any) -> str | None:
    """``value`` (JSON-compatible Python, or anything pydantic can
    serialise, as :func:`queuert.to_json_value` would) as JSON text for a
    ``jsonb`` parameter, in one pass; None stays SQL NULL. Sent as text, which
    psycopg binds without the Python-level work of its ``Jsonb`` dumper."""
    if value is None:
        return None
    try:
        return pydantic_core.to_json(value).decode()
    except pydantic_core.PydanticSerializationError as e:
        raise InvalidArgumentError(f"payload is not JSON-serialisable: {e}") from e


def batch_json(items: list[dict[str, Any]]) -> str:
    """The items of one ``start_chains`` call as one JSON document, in one
    serialisation pass (pydantic's rules, so an untyped input is stored as
    :func:`queuert.to_json_value` would store it)."""
    try:
        return pydantic_core.to_json(items).decode()
    except pydantic_core.PydanticSerializationError as e:
        error = e
    for ord_, item in enumerate(items, start=1):  # rare: name the item at fault
        try:
            pydantic_core.to_json(item)
        except pydantic_core.PydanticSerializationError as e:
            raise InvalidArgumentError(
                f"start_chains item {ord_}: payload is not JSON-serialisable: {e}"
            ) from e
    raise InvalidArgumentError(f"payload is not JSON-serialisable: {error}") from error


def chain_item(spec: BaseChainSpec) -> dict[str, Any]:
    """One ``start_chains`` item for the engine, in its key names
    (docs/DESIGN.md). Only the keys that differ from the defaults: most items
    are a type and an input, and the engine inserts those in its fast path."""
    if not isinstance(spec, ChainSpec):
        raise InvalidArgumentError(f"start_chains takes ChainSpec items, got {spec!r}")
    payload = sent_payload(spec)
    item: dict[str, Any] = {"type_name": sent_type_name(spec)}
    if payload is not None:
        item["input"] = payload
    try:
        _plain_of(spec)
        return item  # built without options
    except AttributeError:
        pass
    check_priority(spec.priority)
    if spec.id is not None:
        item["id"] = str(uuid_of(spec.id, "id"))
    if spec.schedule_at is not None:
        item["schedule_at"] = to_json_value(spec.schedule_at)
    if spec.schedule_after is not None:
        item["schedule_after_ms"] = millis(spec.schedule_after)
    if spec.blockers is not None:
        item["blockers"] = [str(b) for b in uuids_of(spec.blockers, "blockers") or []]
    if spec.dedup_key is not None:
        item["dedup_key"] = spec.dedup_key
    if spec.dedup_scope not in (None, "incomplete"):
        item["dedup_scope"] = spec.dedup_scope
    if spec.dedup_window is not None:
        item["dedup_window_ms"] = millis(spec.dedup_window)
    if spec.priority:
        item["priority"] = spec.priority
    if spec.trace_context is not None:
        item["trace_context"] = spec.trace_context
    return item


def _items_list(items: Sequence[BaseChainSpec]) -> Sequence[BaseChainSpec]:
    if isinstance(items, (str, bytes, Mapping)):
        raise InvalidArgumentError("start_chains takes a sequence of ChainSpec")
    return items if isinstance(items, (list, tuple)) else list(items)


def chain_items(items: Sequence[BaseChainSpec]) -> list[dict[str, Any]]:
    items = _items_list(items)
    # The common batch, every item a ChainSpec of a type name without
    # options (SQLite's twin and the traced call take it as items), in one
    # comprehension; else item by item.
    if set(map(type, items)) == {ChainSpec}:
        try:
            plain = all(map(_plain_of, items))  # AttributeError: a spec with options
        except AttributeError:
            plain = False
        if plain:
            return [
                {"type_name": name} if value is None else {"type_name": name, "input": value}
                for name, value in zip(map(_job_type_of, items), map(_input_of, items))
            ]
    return [chain_item(spec) for spec in items]


# The common batch (every item a ChainSpec built without options, all of a
# type name or all of a JobType) is serialised from the specs themselves:
# two of their slots, read by pydantic-core as a dataclass's fields (a type
# name's job_type and input as given; a JobType's name and its validated,
# dumped input). The same serialiser as pydantic_core.to_json for the
# inputs (inference, NaN and Infinity as to_json writes them: the engine
# refuses them), and no item dict per spec. An input of None is sent as
# "input": null, which the engine takes as no input (docs/DESIGN.md).
def _specs_serializer(type_name_slot: str, input_slot: str) -> pydantic_core.SchemaSerializer:
    return pydantic_core.SchemaSerializer(
        core_schema.list_schema(
            core_schema.dataclass_schema(
                ChainSpec,
                core_schema.dataclass_args_schema(
                    "ChainSpec",
                    [
                        core_schema.dataclass_field(
                            type_name_slot, core_schema.str_schema(), serialization_alias="type_name"
                        ),
                        core_schema.dataclass_field(
                            input_slot, core_schema.any_schema(), serialization_alias="input"
                        ),
                    ],
                ),
                [type_name_slot, input_slot],
                slots=True,
            )
        ),
        core_schema.CoreConfig(ser_json_inf_nan="constants"),
    )


#: by the specs' _plain: True (a type name), False (a JobType)
_PLAIN_SPECS = {True: _specs_serializer("job_type", "input"), False: _specs_serializer("_type_name", "_payload")}


def plain_batch_json(items: Sequence[BaseChainSpec]) -> tuple[Sequence[BaseChainSpec], str | None]:
    """The items as a sequence, and the JSON document of ``start_chains``
    when every item is a ChainSpec built without options, all of a type name
    or all of a JobType (else None: the caller takes :func:`chain_items` and
    :func:`batch_json`, which check the options and name an item whose
    input cannot be serialised)."""
    items = _items_list(items)
    if not items or set(map(type, items)) != {ChainSpec}:
        return items, None
    try:
        kinds = set(map(_plain_of, items))  # AttributeError: a spec with options
    except AttributeError:
        return items, None
    if len(kinds) != 1:
        return items, None
    try:
        return items, _PLAIN_SPECS[kinds.pop()].to_json(items, by_alias=True).decode()
    except pydantic_core.PydanticSerializationError:
        return items, None


def encode_cursor(created_at: datetime, chain_id: UUID) -> str:
    raw = f"{created_at.isoformat()}|{chain_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, cid = raw.split("|")
        created = datetime.fromisoformat(ts)
        if created.tzinfo is None:
            raise ValueError("naive timestamp")
        return created, UUID(cid)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgumentError(f"not a list_chains cursor: {cursor!r}") from None
