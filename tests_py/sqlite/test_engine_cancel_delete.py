"""cancel_chains (tests_sql/cancel_chains.sql) and delete_chains
(tests_sql/delete_chains.sql): with and without cascade, the QU005
refusal, skipped ids."""

from __future__ import annotations

import pytest
from .sqlite_backends import U, Engine, pick

from queuert.errors import ChainHasDependentsError, InvalidArgumentError, InvalidJobStatusError, JobNotFoundError


def _cancel_arranged(engine: Engine) -> None:
    # 1: pending; 2: running; 3: two jobs, the first completed; 4: completed
    # chain; 5: failed (dedup key k5).
    engine.set_job_type("once", max_attempts=1)
    engine.start_chain("t", id=U(1))
    engine.start_chain("run", id=U(2))
    engine.claim("w", ["run"])
    engine.start_chain("s1", id=U(3))
    engine.claim("w", ["s1"])
    engine.continue_with(U(3), "w", "s2", id=U(30))
    engine.start_chain("t", id=U(4))
    engine.complete(U(4), None, "done")
    engine.start_chain("once", id=U(5), dedup_key="k5")
    engine.claim("w", ["once"])
    engine.fail(U(5), "w", "x")


def test_cancel_chains(engine: Engine) -> None:
    _cancel_arranged(engine)
    cancelled = engine.cancel_chains([U(1), U(2), U(3), U(4), U(5), U(30), U(99), None, U(1)])
    assert sorted(cancelled) == [U(1), U(2), U(3), U(5)], (
        "one row per chain that had a job cancelled; non-root, unknown, NULL and complete skipped"
    )
    assert [pick(engine.job(U(i)), "status", "leased_by", "leased_until") for i in (1, 2, 3, 4, 5, 30)] == [
        {"status": "cancelled", "leased_by": None, "leased_until": None},
        {"status": "cancelled", "leased_by": None, "leased_until": None},
        {"status": "completed", "leased_by": None, "leased_until": None},
        {"status": "completed", "leased_by": None, "leased_until": None},
        {"status": "cancelled", "leased_by": None, "leased_until": None},
        {"status": "cancelled", "leased_by": None, "leased_until": None},
    ]
    assert engine.job(U(4))["output"] == "done"  # type: ignore[index]
    assert [engine.chain(U(i))["status"] for i in (1, 3, 4, 5)] == [  # type: ignore[index]
        "cancelled", "cancelled", "completed", "cancelled"
    ]
    with pytest.raises(InvalidJobStatusError) as e:
        engine.complete(U(2), "w")
    assert e.value.message == "cannot complete job 00000000-0000-0000-0000-000000000002: it is cancelled, not running"
    assert engine.cancel_chains([U(1)]) == [], "cancelling again cancels nothing"
    assert engine.claim("w2") == [], "cancelled jobs are not claimed"
    assert pick(engine.start_chain("once", id=U(6), dedup_key="k5"), "id", "deduplicated") == {
        "id": U(6), "deduplicated": False,
    }, "the cancelled failed chain's dedup key is free again"


def _family(engine: Engine) -> None:
    engine.start_chain("child", id=U(10))
    engine.start_chain("child", id=U(11))
    engine.start_chain("grandchild", id=U(12))
    engine.start_chain("child", id=U(13), blockers=[U(12)])
    engine.start_chain("parent", id=U(14), blockers=[U(10), U(11), U(13)])


def test_cancel_refuses_while_someone_outside_waits(engine: Engine) -> None:
    _family(engine)
    msg = "cannot cancel chain 00000000-0000-0000-0000-0000000000{}: job 00000000-0000-0000-0000-0000000000{} outside the set waits on it"
    with pytest.raises(ChainHasDependentsError) as e:
        engine.cancel_chains([U(10)])
    assert e.value.message == msg.format(10, 14)
    assert e.value.details == {"chain_id": str(U(10)), "job_id": str(U(14))}
    assert engine.job(U(10))["status"] == "pending"  # type: ignore[index]
    engine.complete(U(11), None)
    with pytest.raises(ChainHasDependentsError) as e:
        engine.cancel_chains([U(11)])
    assert e.value.message == msg.format(11, 14), "also when the chain is already complete"
    with pytest.raises(ChainHasDependentsError) as e:
        engine.cancel_chains([U(14), U(12)])
    assert e.value.message == msg.format(12, 13)
    assert [engine.job(U(i))["status"] for i in (12, 14)] == ["pending", "blocked"]  # type: ignore[index]


def test_a_blocker_with_its_only_dependent_is_fine(engine: Engine) -> None:
    engine.start_chain("b", id=U(16))
    engine.start_chain("d", id=U(17), blockers=[U(16)])
    assert engine.cancel_chains([U(17), U(16)]) == [U(17), U(16)], "both cancelled, in input order"


def test_cancel_cascade(engine: Engine) -> None:
    _family(engine)
    engine.complete(U(11), None)
    engine.start_chain("other", id=U(15), blockers=[U(12)])
    with pytest.raises(ChainHasDependentsError) as e:
        engine.cancel_chains([U(14)], cascade=True)
    assert e.value.chain_id == U(12) and e.value.job_id == U(15)
    engine.delete_chains([U(15)])
    assert sorted(engine.cancel_chains([U(14)], cascade=True)) == [U(10), U(12), U(13), U(14)], (
        "parent, children and grandchild; the complete child is not listed"
    )
    assert [engine.job(U(i))["status"] for i in (10, 11, 12, 13, 14)] == [  # type: ignore[index]
        "cancelled", "completed", "cancelled", "cancelled", "cancelled"
    ]
    with pytest.raises(InvalidArgumentError):
        engine.cancel_chains(None)
    assert engine.cancel_chains([]) == []


def test_delete_chains(engine: Engine) -> None:
    engine.start_chain("s1", id=U(1))
    engine.claim("w", ["s1"])
    engine.continue_with(U(1), "w", "s2", id=U(100))
    engine.claim("w", ["s2"])
    engine.start_chain("t", id=U(2))
    engine.complete(U(2), None)
    engine.start_chain("t", id=U(3))
    assert sorted(engine.delete_chains([U(1), U(100), U(2), None, U(99)])) == [U(1), U(2)]
    assert [j["id"] for j in engine.jobs()] == [U(3)], "every job of the chains is gone, other chains stay"
    with pytest.raises(JobNotFoundError) as e:
        engine.complete(U(100), "w")
    assert e.value.message == "job 00000000-0000-0000-0000-000000000100 not found"
    assert [r["outcome"] for r in engine.renew_leases("w", [U(100)])] == ["not_found"]
    assert engine.delete_chains([U(1)]) == []


def test_delete_refusal_and_cascade(engine: Engine) -> None:
    engine.start_chain("child", id=U(10))
    engine.start_chain("grandchild", id=U(11))
    engine.start_chain("child", id=U(12), blockers=[U(11)])
    engine.start_chain("parent", id=U(13), blockers=[U(10), U(12)])
    engine.complete(U(10), None)
    msg = "cannot delete chain 00000000-0000-0000-0000-0000000000{}: job 00000000-0000-0000-0000-0000000000{} outside the set waits on it"
    with pytest.raises(ChainHasDependentsError) as e:
        engine.delete_chains([U(10)])
    assert e.value.message == msg.format(10, 13)
    with pytest.raises(ChainHasDependentsError) as e:
        engine.delete_chains([U(11), U(12)])
    assert e.value.message == msg.format(12, 13)
    assert len(engine.jobs()) == 4, "nothing deleted after QU005"
    engine.start_chain("other", id=U(14), blockers=[U(11)])
    with pytest.raises(ChainHasDependentsError) as e:
        engine.delete_chains([U(13)], True)
    assert e.value.message == msg.format(11, 14)
    engine.delete_chains([U(14)])
    assert sorted(engine.delete_chains([U(13)], cascade=True)) == [U(10), U(11), U(12), U(13)]
    assert engine.jobs() == [] and engine.edges() == [], "all gone, and every blocker row with them"


def test_chains_waiting_on_each_other_are_deleted_together(engine: Engine) -> None:
    engine.start_chain("a", id=U(20))
    engine.start_chain("b", id=U(21), blockers=[U(20)])
    engine.continue_with(U(20), None, "a2", id=U(22), blockers=[U(21)])
    assert sorted(engine.delete_chains([U(20), U(21)])) == [U(20), U(21)]
    assert engine.jobs() == []
    with pytest.raises(InvalidArgumentError):
        engine.delete_chains(None)
