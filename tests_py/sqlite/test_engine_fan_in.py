"""Blocker fan-in (tests_sql/blockers_fan_in.sql): a dependent runs only
when every blocker chain's LAST job completes, resolved in the completing
transaction."""

from __future__ import annotations

from datetime import timedelta

from .sqlite_backends import U, Engine, pick


def test_fan_out_and_fan_in(engine: Engine) -> None:
    now = engine.now
    engine.start_chains([
        {"type_name": "fetch", "id": str(U(1))},
        {"type_name": "fetch", "id": str(U(2))},
        {"type_name": "resize", "id": str(U(3))},
        {"type_name": "report", "id": str(U(4)), "blockers": [str(U(3)), str(U(1)), str(U(2))],
         "schedule_after_ms": 0},
    ])
    engine.start_chain("audit", id=U(5), blockers=[U(3)], schedule_at=now + timedelta(days=1))

    def fan_in() -> dict:
        return pick(engine.job(U(4)), "status", "open_blockers")

    assert fan_in() == {"status": "blocked", "open_blockers": 3}
    assert engine.claim("w", ["report", "audit"]) == [], "a blocked job is never claimed"

    engine.claim("w", ["fetch"], 2)
    engine.complete(U(1), "w", {"f": 1})
    assert fan_in() == {"status": "blocked", "open_blockers": 2}

    engine.claim("w", ["resize"])
    engine.continue_with(U(3), "w", "resize-upload", id=U(30))
    assert fan_in() == {"status": "blocked", "open_blockers": 2}, "continue_with does not unblock"
    assert engine.job(U(5))["status"] == "blocked"  # type: ignore[index]

    engine.fail(U(2), "w", "network")
    assert fan_in() == {"status": "blocked", "open_blockers": 2}, "a failed attempt does not unblock"
    engine.trigger_jobs([U(2)])
    engine.claim("w", ["fetch"])
    engine.complete(U(2), "w", {"f": 2})
    assert fan_in() == {"status": "blocked", "open_blockers": 1}

    engine.claim("w", ["resize-upload"])
    assert engine.complete(U(30), "w", {"url": "s3://x"})["chain_completed"] is True
    assert [pick(engine.job(u), "status", "open_blockers", "scheduled_at") for u in (U(4), U(5))] == [
        {"status": "pending", "open_blockers": 0, "scheduled_at": now},
        {"status": "pending", "open_blockers": 0, "scheduled_at": now + timedelta(days=1)},
    ], "a later schedule is kept"

    assert engine.claim("w", ["report"])[0]["blockers"] == [
        {"chain_id": str(U(3)), "type_name": "resize", "output": {"url": "s3://x"}},
        {"chain_id": str(U(1)), "type_name": "fetch", "output": {"f": 1}},
        {"chain_id": str(U(2)), "type_name": "fetch", "output": {"f": 2}},
    ], "the blockers' final outputs, in blocker order, with the chain's root type"

    engine.start_chain("sub", id=U(40))
    r = engine.continue_with(U(4), "w", "report-2", id=U(41), blockers=[U(40), U(1)])
    assert r["status"] == "blocked", "a continuation can wait on other chains"
    assert engine.job(U(41))["open_blockers"] == 1  # type: ignore[index]
    engine.complete(U(40), None, "sub-done")
    assert engine.job(U(41))["status"] == "pending", "unblocked by a workerless completion"  # type: ignore[index]


def test_complete_jobs_resolves_dependents_too(engine: Engine) -> None:
    engine.start_chain("x", id=U(50))
    engine.start_chain("x", id=U(51))
    engine.start_chain("y", id=U(52), blockers=[U(50), U(51)])
    engine.claim("w", ["x"], 2)
    assert [r["outcome"] for r in engine.complete_jobs("w", [U(50), U(51)])] == ["completed", "completed"]
    assert pick(engine.job(U(52)), "status", "open_blockers") == {"status": "pending", "open_blockers": 0}
    engine.start_chain("done", id=U(3))
    engine.complete(U(3), None)
    assert engine.start_chain("z", blockers=[U(50), U(3)])["status"] == "pending", "blockers already complete"
