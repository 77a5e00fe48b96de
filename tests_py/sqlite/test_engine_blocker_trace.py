"""Trace context per blocker edge, on both engines (PostgreSQL 0008, SQLite
0004; pgTAP blocker_edge_trace.sql): each edge keeps the trace_context of
the call that added it; a completion given the completing span's
traceparent writes it on the edges it resolves and lists the waiting jobs
(dependents); claim hands it out per blocker; without one nothing changes."""

from __future__ import annotations

from .sqlite_backends import U, Engine


def test_edges_keep_both_ends_of_the_wait(engine: Engine) -> None:
    engine.start_chain("blk", id=U(1))
    engine.start_chain("blk", id=U(2))
    engine.start_chain("blk3", id=U(3))
    engine.start_chain("fan", id=U(10), blockers=[U(1), U(2)], trace_context="tp-fan")
    engine.start_chains([
        {"type_name": "inner", "id": str(U(11)), "trace_context": "tp-inner"},
        {"type_name": "fan2", "id": str(U(12)), "trace_context": "tp-fan2", "blockers": [str(U(11)), str(U(1))]},
    ])
    engine.start_chain("step", id=U(20), trace_context="tp-step")
    engine.claim("w1", ["step"])
    engine.continue_with(U(20), "w1", "wait", id=U(21), blockers=[U(3)], trace_context="tp-wait")
    assert engine.edge_traces(U(10)) == [("tp-fan", None), ("tp-fan", None)]
    assert engine.edge_traces(U(12)) == [("tp-fan2", None), ("tp-fan2", None)]
    assert engine.edge_traces(U(21)) == [("tp-wait", None)]

    # without a trace context: nothing written, no dependents
    engine.claim("w2", ["blk"], 2)
    done = engine.call("complete", job_id=U(2), worker_id="w2")[0]
    assert done.get("dependents") is None
    assert engine.edge_traces(U(10)) == [("tp-fan", None), ("tp-fan", None)]

    # complete_jobs with one: written, and the waiting jobs listed
    (row,) = engine.call("complete_jobs", worker_id="w2", job_ids=[U(1)], trace_contexts=["tp-done-b1"])
    assert row["outcome"] == "completed"
    assert row["dependents"] == [
        {"job_id": str(U(10)), "type_name": "fan", "trace_context": "tp-fan", "pending": True},
        {"job_id": str(U(12)), "type_name": "fan2", "trace_context": "tp-fan2", "pending": False},
    ]
    assert engine.edge_traces(U(10)) == [("tp-fan", "tp-done-b1"), ("tp-fan", None)]
    assert engine.edge_traces(U(12)) == [("tp-fan2", None), ("tp-fan2", "tp-done-b1")]

    # complete with one
    engine.claim("w3", ["blk3"])
    (resolved,) = engine.call("complete", job_id=U(3), worker_id="w3", trace_context="tp-done-b3")
    assert resolved["dependents"] == [
        {"job_id": str(U(21)), "type_name": "wait", "trace_context": "tp-wait", "pending": True},
    ]

    # the waiting job's claim: each blocker's completion (NULL: none given)
    (claimed,) = engine.call("claim", worker_id="w4", type_names=["fan"])  # call: keeps the trace keys
    assert [(str(b["chain_id"]), b["resolved_trace_context"]) for b in claimed["blockers"]] == [
        (str(U(1)), "tp-done-b1"),
        (str(U(2)), None),
    ]
