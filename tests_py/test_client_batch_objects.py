"""start_chains' common batch (ChainSpecs of a type name, no options) is sent
as the specs themselves and allocates no object per item that the call does
not need: every garbage-collected object brings the collector's next pass
nearer, and its full passes cost in proportion to the whole process's heap
(benchmarks/README.md, "The client's cost over its SQL call")."""

from __future__ import annotations

import copy
import dataclasses
import gc
import math
import pickle
import uuid
import weakref
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pydantic
import pytest

from queuert import ChainSpec, StartedChain, start_chains
from queuert._arguments import plain_batch_json


class Nested(pydantic.BaseModel):
    a: int = pydantic.Field(alias="A")
    b: int | None = None


INPUTS: list[Any] = [
    None,
    {"n": 1},
    [1, "two", None],
    "text",
    {"at": datetime(2024, 1, 2, 3, 4, tzinfo=timezone.utc), "id": uuid.UUID(int=7)},
    {"amount": Decimal("1.50"), "model": Nested(A=3)},
    {"k": None},
]


def _stored_inputs(conn: psycopg.Connection[Any], ids: list[uuid.UUID]) -> list[Any]:
    rows = conn.execute(
        "SELECT j.input FROM queuert.job j JOIN unnest(%s::uuid[]) WITH ORDINALITY AS u (id, n)"
        " ON j.id = u.id ORDER BY u.n",
        (ids,),
    ).fetchall()
    return [r[0] for r in rows]


def test_a_plain_batch_stores_what_the_item_path_stores(conn: psycopg.Connection[Any]) -> None:
    plain = [ChainSpec("t", value) for value in INPUTS]
    # priority=0 is an option given (at its default): the item-by-item path
    with_option = [ChainSpec("t", value, priority=0) for value in INPUTS]
    assert plain_batch_json(plain)[1] is not None
    assert plain_batch_json(with_option)[1] is None

    sent_plain = start_chains(conn, plain)
    sent_items = start_chains(conn, with_option)
    assert [c.type_name for c in sent_plain] == ["t"] * len(INPUTS)
    stored = _stored_inputs(conn, [c.id for c in sent_plain])
    assert stored == _stored_inputs(conn, [c.id for c in sent_items])
    assert stored[0] is None  # no input: SQL NULL, not JSON null
    assert stored[4] == {"at": "2024-01-02T03:04:00Z", "id": str(uuid.UUID(int=7))}
    assert stored[5] == {"amount": "1.50", "model": {"A": 3, "b": None}}


def test_a_typed_batch_stores_what_the_item_path_stores(conn: psycopg.Connection[Any]) -> None:
    from queuert import JobType

    typed = JobType("typed", input=Nested)
    plain = [ChainSpec(typed, Nested(A=i)) for i in range(3)]
    with_option = [ChainSpec(typed, Nested(A=i), priority=0) for i in range(3)]
    mixed = [ChainSpec(typed, Nested(A=1)), ChainSpec("t", {"n": 1})]
    assert plain_batch_json(plain)[1] is not None
    assert plain_batch_json(with_option)[1] is None and plain_batch_json(mixed)[1] is None
    sent_plain = start_chains(conn, plain)
    sent_items = start_chains(conn, with_option)
    assert [c.type_name for c in sent_plain] == ["typed"] * 3
    stored = _stored_inputs(conn, [c.id for c in sent_plain])
    assert stored == _stored_inputs(conn, [c.id for c in sent_items])
    assert stored == [typed.dump_input(Nested(A=i)) for i in range(3)]
    assert [c.type_name for c in start_chains(conn, mixed)] == ["typed", "t"]


def test_a_plain_batch_refuses_what_the_item_path_refuses(conn: psycopg.Connection[Any]) -> None:
    # NaN: written as to_json writes it, which the engine refuses
    for specs in ([ChainSpec("t", {"x": math.nan})], [ChainSpec("t", {"x": math.nan}, priority=0)]):
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            start_chains(conn, specs)
        conn.rollback()
    # not serialisable: the item at fault is named, as before
    from queuert import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="start_chains item 2: payload is not JSON"):
        start_chains(conn, [ChainSpec("ok", 1), ChainSpec("bad", object())])


def _tracked_after(build: Any) -> tuple[Any, int]:
    """What ``build()`` returns and how many more objects the garbage
    collector tracks while it is alive."""
    gc.collect()
    before = len(gc.get_objects())
    kept = build()
    return kept, len(gc.get_objects()) - before


def test_a_plain_spec_is_one_tracked_object(conn: psycopg.Connection[Any]) -> None:
    values = [{"n": i} for i in range(1000)]
    specs, tracked = _tracked_after(lambda: [ChainSpec("t", v) for v in values])
    assert tracked <= 1000 + 10  # the spec, no instance dict, no item dict
    assert not hasattr(specs[0], "__dict__")

    started, tracked = _tracked_after(lambda: start_chains(conn, specs))
    assert len(started) == 1000
    assert tracked <= 2 * 1000 + 10  # a StartedChain and its UUID a row
    assert not hasattr(started[0], "__dict__")


def test_slotted_specs_and_rows_stay_ordinary_values() -> None:
    spec = ChainSpec("t", {"n": 1}, dedup_key="k")
    plain = ChainSpec("t", {"n": 1})
    assert (plain.dedup_key, plain.dedup_scope, plain.priority) == (None, "incomplete", 0)
    defaults = {f.name: f.default for f in dataclasses.fields(ChainSpec)}
    assert (defaults["dedup_scope"], defaults["priority"], defaults["id"]) == ("incomplete", 0, None)
    for other in (copy.copy(spec), copy.deepcopy(spec), pickle.loads(pickle.dumps(spec))):
        assert other == spec and other.dedup_key == "k"
    for other in (copy.copy(plain), pickle.loads(pickle.dumps(plain))):
        assert other == plain and plain_batch_json([other])[1] == plain_batch_json([plain])[1]
    with pytest.raises(AttributeError):
        plain.colour  # type: ignore[attr-defined]  # noqa: B018
    now = datetime.now(timezone.utc)
    row = StartedChain(uuid.UUID(int=1), uuid.UUID(int=1), "t", "pending", now, now, False)
    assert pickle.loads(pickle.dumps(row)) == row and copy.deepcopy(row) == row
    assert dataclasses.replace(row, status="blocked").status == "blocked"
    assert weakref.ref(row)() is row and weakref.ref(plain)() is plain
