"""start_chains (tests_sql/start_chains.sql): batch creation in input order,
defaults, in-batch blockers and dedup, malformed batches."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from .sqlite_backends import U, Engine, pick

from queuert.errors import ChainNotFoundError, InvalidArgumentError

RESULT = ("ord", "id", "chain_id", "type_name", "status", "scheduled_at", "created_at", "deduplicated")


def s(u: Any) -> str:
    return str(u)


def test_plain_items_in_input_order(engine: Engine) -> None:
    now = engine.now
    rows = engine.start_chains([
        {"type_name": "a", "id": s(U(1)), "input": {"n": 1}},
        {"type_name": "b", "id": s(U(2)), "priority": 5, "trace_context": "tc-2", "schedule_after_ms": 1500},
        {"type_name": "a", "id": s(U(3)), "schedule_at": (now - timedelta(days=1)).isoformat()},
    ])
    assert [tuple(r[k] for k in RESULT) for r in rows] == [
        (1, U(1), U(1), "a", "pending", now, now, False),
        (2, U(2), U(2), "b", "pending", now + timedelta(seconds=1.5), now, False),
        (3, U(3), U(3), "a", "pending", now, now, False),
    ]
    assert [
        pick(j, "id", "type_name", "chain_type_name", "chain_index", "input", "priority", "trace_context", "attempt")
        for j in engine.jobs()
    ] == [
        {"id": U(1), "type_name": "a", "chain_type_name": "a", "chain_index": 0, "input": {"n": 1},
         "priority": 0, "trace_context": None, "attempt": 0},
        {"id": U(2), "type_name": "b", "chain_type_name": "b", "chain_index": 0, "input": None,
         "priority": 5, "trace_context": "tc-2", "attempt": 0},
        {"id": U(3), "type_name": "a", "chain_type_name": "a", "chain_index": 0, "input": None,
         "priority": 0, "trace_context": None, "attempt": 0},
    ], "rows inserted in input order (seq) with the given fields"


def test_json_null_takes_the_default(engine: Engine) -> None:
    engine.start_chains([{
        "type_name": "nulls", "id": s(U(4)), "input": None, "schedule_at": None,
        "schedule_after_ms": None, "blockers": None, "dedup_key": None, "dedup_scope": None,
        "dedup_window_ms": None, "priority": None, "trace_context": None,
    }])
    assert pick(engine.job(U(4)), "status", "scheduled_at", "priority", "dedup_key", "input", "trace_context") == {
        "status": "pending", "scheduled_at": engine.now, "priority": 0, "dedup_key": None,
        "input": None, "trace_context": None,
    }
    assert engine.start_chains([{"type_name": "gen"}])[0]["id"] is not None
    assert engine.start_chains([]) == [], "an empty array creates nothing and returns no rows"


def test_fan_out_and_fan_in_in_one_call(engine: Engine) -> None:
    rows = engine.start_chains([
        {"type_name": "child", "id": s(U(10))},
        {"type_name": "child", "id": s(U(11))},
        {"type_name": "parent", "id": s(U(12)), "blockers": [s(U(11)), s(U(10))]},
    ])
    assert [(r["ord"], r["status"]) for r in rows] == [(1, "pending"), (2, "pending"), (3, "blocked")]
    assert engine.edges(U(12)) == [(U(12), 1, U(11)), (U(12), 2, U(10))]
    assert engine.job(U(12))["open_blockers"] == 2  # type: ignore[index]


def test_external_blockers_complete_or_not(engine: Engine) -> None:
    engine.start_chains([{"type_name": "a", "id": s(U(1))}, {"type_name": "b", "id": s(U(2))}])
    engine.set_job(U(1), status="completed", completed_at=engine.now, chain_completed_at=engine.now)
    rows = engine.start_chains([
        {"type_name": "p", "id": s(U(13)), "blockers": [s(U(1))]},
        {"type_name": "p", "id": s(U(14)), "blockers": [s(U(1)), s(U(2))]},
    ])
    assert [(r["ord"], r["status"], engine.job(r["id"])["open_blockers"]) for r in rows] == [  # type: ignore[index]
        (1, "pending", 0), (2, "blocked", 1)
    ]


def test_blockers_naming_the_item_itself_a_later_one_or_nothing_are_qu002(engine: Engine) -> None:
    with pytest.raises(ChainNotFoundError) as e:
        engine.start_chains([{"type_name": "x", "id": s(U(20)), "blockers": [s(U(20))]}])
    assert e.value.message == (
        "start_chains item 1 names blocker 00000000-0000-0000-0000-000000000020, "
        "which is that item itself or a later one"
    )
    with pytest.raises(ChainNotFoundError) as e:
        engine.start_chains([
            {"type_name": "x", "id": s(U(21)), "blockers": [s(U(22))]},
            {"type_name": "x", "id": s(U(22))},
        ])
    assert e.value.message == (
        "start_chains item 1 names blocker 00000000-0000-0000-0000-000000000022, "
        "which is that item itself or a later one"
    )
    with pytest.raises(ChainNotFoundError) as e:
        engine.start_chains([
            {"type_name": "x", "id": s(U(23))},
            {"type_name": "x", "blockers": [s(U(98))]},
        ])
    assert e.value.message == "blocker chain 00000000-0000-0000-0000-000000000098 not found"
    assert engine.jobs() == [], "nothing written by the refused batches"


def test_dedup_inside_the_batch(engine: Engine) -> None:
    rows = engine.start_chains([
        {"type_name": "d", "id": s(U(30)), "dedup_key": "k1"},
        {"type_name": "d", "id": s(U(31)), "dedup_key": "k1"},
        {"type_name": "e", "id": s(U(32)), "dedup_key": "k1"},
        {"type_name": "d", "id": s(U(33)), "dedup_key": "k2"},
    ])
    assert [(r["ord"], r["id"], r["status"], r["deduplicated"]) for r in rows] == [
        (1, U(30), "pending", False), (2, U(30), "pending", True),
        (3, U(32), "pending", False), (4, U(33), "pending", False),
    ]
    assert engine.job(U(31)) is None, "the deduplicated item wrote no job"


def test_a_blocker_naming_an_item_that_deduplicated_means_its_chain(engine: Engine) -> None:
    now = engine.now
    engine.start_chain("ext", id=U(40), dedup_key="e1")
    rows = engine.start_chains([
        {"type_name": "ext", "id": s(U(41)), "dedup_key": "e1"},
        {"type_name": "fanin", "id": s(U(42)), "blockers": [s(U(41))]},
    ])
    assert [(r["ord"], r["id"], r["status"], r["deduplicated"], r["created_at"]) for r in rows] == [
        (1, U(40), "pending", True, now), (2, U(42), "blocked", False, now)
    ]
    assert [b for _j, _p, b in engine.edges(U(42))] == [U(40)]
    assert engine.job(U(41)) is None

    rows = engine.start_chains([
        {"type_name": "g", "id": s(U(45)), "dedup_key": "g1"},
        {"type_name": "g", "id": s(U(46)), "dedup_key": "g1"},
        {"type_name": "h", "id": s(U(47)), "blockers": [s(U(46))]},
    ])
    assert [(r["ord"], r["id"], r["status"], r["deduplicated"]) for r in rows] == [
        (1, U(45), "pending", False), (2, U(45), "pending", True), (3, U(47), "blocked", False)
    ]
    assert engine.edges(U(47)) == [(U(47), 1, U(45))]


def test_dedup_scope_and_window_inside_items(engine: Engine) -> None:
    now = engine.now
    engine.start_chain("ext", id=U(40), dedup_key="e1")
    engine.set_job(U(40), status="completed", completed_at=now, chain_completed_at=now)
    rows = engine.start_chains([
        {"type_name": "ext", "dedup_key": "e1", "dedup_scope": "any"},
        {"type_name": "ext", "dedup_key": "e1", "dedup_scope": "incomplete", "id": s(U(43))},
    ])
    assert [(r["ord"], r["id"], r["status"], r["deduplicated"]) for r in rows] == [
        (1, U(40), "completed", True), (2, U(40), "completed", True)
    ], "scope any matches a completed chain; a later same-key item follows the first"
    engine.set_job(U(40), created_at=now - timedelta(minutes=10))
    rows = engine.start_chains([
        {"type_name": "ext", "dedup_key": "e1", "dedup_scope": "any", "dedup_window_ms": 60000, "id": s(U(44))}
    ])
    assert [(r["id"], r["deduplicated"]) for r in rows] == [(U(44), False)]


def test_claim_follows_the_batch_input_order(engine: Engine) -> None:
    engine.start_chains([
        {"type_name": "fifo", "id": s(U(53))},
        {"type_name": "fifo", "id": s(U(51))},
        {"type_name": "fifo", "id": s(U(52))},
    ])
    assert [r["id"] for r in engine.claim("w", ["fifo"], 10)] == [U(53), U(51), U(52)]


@pytest.mark.parametrize(
    ("items", "what"),
    [
        ({"type_name": "x"}, "a non-array"),
        (None, "NULL items"),
        ([{"type_name": "ok", "id": s(U(60))}, {"type_name": "ok", "colour": "red"}], "an unknown key"),
        ([{"type_name": "ok", "id": s(U(61))}, {"input": 1}], "a missing type_name"),
        ([1], "a non-object item"),
        ([{"type_name": ""}], "an empty type_name"),
        ([{"type_name": "x", "schedule_after_ms": -1}], "a negative delay"),
        ([{"type_name": "x", "schedule_after_ms": 5, "schedule_at": "2030-01-01T00:00:00Z"}], "both schedule forms"),
        ([{"type_name": "x", "dedup_key": "k", "dedup_scope": "all"}], "an unknown dedup scope"),
        ([{"type_name": "x", "schedule_at": "not a time"}], "an unparsable schedule_at"),
        ([{"type_name": "x", "id": "nope"}], "a malformed id"),
        ([{"type_name": "x", "priority": 1.5}], "a fractional priority"),
    ],
)
def test_malformed_batches_are_qu006(engine: Engine, items: Any, what: str) -> None:
    with pytest.raises(InvalidArgumentError) as e:
        engine.start_chains(items)
    assert e.value.sqlstate == "QU006", what
    assert engine.jobs() == [], "nothing written"


def test_ids_given_twice_or_existing_are_qu006(engine: Engine) -> None:
    engine.start_chain("a", id=U(2))
    with pytest.raises(InvalidArgumentError) as e:
        engine.start_chains([{"type_name": "x", "id": s(U(62))}, {"type_name": "x", "id": s(U(62))}])
    assert e.value.message == "start_chains gives id 00000000-0000-0000-0000-000000000062 to more than one item"
    with pytest.raises(InvalidArgumentError) as e:
        engine.start_chains([{"type_name": "x", "id": s(U(63))}, {"type_name": "x", "id": s(U(2))}])
    assert e.value.message == "a job with id 00000000-0000-0000-0000-000000000002 already exists"
    assert [j["id"] for j in engine.jobs()] == [U(2)], "nothing written by any refused batch"


def test_built_for_bulk(engine: Engine) -> None:
    rows = engine.start_chains([{"type_name": "bulk", "input": g} for g in range(1, 1001)])
    assert len(rows) == 1000
    assert all(r["ord"] == engine.job(r["id"])["input"] for r in rows[:: 97])  # type: ignore[index]
    assert [j["input"] for j in engine.jobs()] == list(range(1, 1001)), "inserted in input order"


@pytest.mark.parametrize("size", [9, 10, 11, 100, 237])
def test_a_bulk_of_any_size_stores_each_items_own_fields_in_input_order(engine: Engine, size: int) -> None:
    """SQLite inserts plain items 100 and 10 rows per statement and the rest
    one by one: every size lands each item's id, input, priority and trace
    context on its own row, in input order."""
    items = [
        {"type_name": "bulk", "input": {"g": g}, "priority": g % 3, "trace_context": f"tc-{g}"} for g in range(size)
    ]
    rows = engine.start_chains(items)
    jobs = engine.jobs()
    assert [j["id"] for j in jobs] == [r["id"] for r in rows] == [j["chain_id"] for j in jobs]
    assert [(j["input"], j["priority"], j["trace_context"]) for j in jobs] == [
        ({"g": g}, g % 3, f"tc-{g}") for g in range(size)
    ]
    assert {(j["status"], j["scheduled_at"], j["created_at"]) for j in jobs} == {("pending", engine.now, engine.now)}
