"""Lays out a chain as a graph for the chain page's SVG.

Middle row: the chain's jobs in order, joined by continuation arrows. Top
row: the chains its jobs wait on (blocker edges into the waiting job).
Bottom row: the chains that wait on this one (edges from its last job).
Arrows point the way work flows: a blocker's completion unblocks its
dependent. Rows show at most MAX_PER_ROW boxes, then a "+N more" box.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

BOX_W = 156
BOX_H = 48
GAP_X = 40
SIDE_GAP = 14
ROW_GAP = 56
MARGIN = 16
MAX_PER_ROW = 10
MAX_JOBS = 12  # a longer chain shows its first job, a gap, and its last ones


@dataclass
class Node:
    x: int
    y: int
    title: str
    subtitle: str
    status: str | None
    href: str | None
    current: bool = False


@dataclass
class Edge:
    x1: int
    y1: int
    x2: int
    y2: int
    kind: str  # "continue" | "blocker" | "dependent"


@dataclass
class Graph:
    width: int
    height: int
    box_w: int = BOX_W
    box_h: int = BOX_H
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)


def _row_x(i: int, gap: int) -> int:
    return MARGIN + i * (BOX_W + gap)


def layout(
    jobs: list[dict[str, Any]],
    links: list[dict[str, Any]],
    *,
    chain_href: Any,
    job_href: Any,
    current_job: UUID | None = None,
) -> Graph:
    """``chain_href(id)`` / ``job_href(id)`` build the boxes' links."""
    waits_on = [r for r in links if r["direction"] == "waits_on"]
    waited_by = [r for r in links if r["direction"] == "waited_by"]
    total_on = int(waits_on[0]["total"]) if waits_on else 0
    total_by = int(waited_by[0]["total"]) if waited_by else 0

    y = MARGIN
    top_y = y
    if waits_on:
        y += BOX_H + ROW_GAP
    job_y = y
    bottom_y = job_y + BOX_H + ROW_GAP
    height = (bottom_y + BOX_H if waited_by else job_y + BOX_H) + MARGIN

    g = Graph(width=0, height=height)
    job_pos: dict[UUID, int] = {}
    shown: list[dict[str, Any] | None] = list(jobs)
    if len(jobs) > MAX_JOBS:
        shown = [jobs[0], None, *jobs[-(MAX_JOBS - 2):]]
    for i, job in enumerate(shown):
        x = _row_x(i, GAP_X)
        if job is None:
            g.nodes.append(Node(x, job_y, f"… {len(jobs) - MAX_JOBS + 1} more", "jobs", None, None))
        else:
            job_pos[job["id"]] = x
            g.nodes.append(
                Node(x, job_y, f"#{job['chain_index']} {job['type_name']}",
                     f"attempt {job['attempt']}", str(job["status"]), job_href(job["id"]),
                     job["id"] == current_job)
            )
        if i:
            g.edges.append(Edge(x - GAP_X, job_y + BOX_H // 2, x, job_y + BOX_H // 2, "continue"))

    def side_row(rows: list[dict[str, Any]], total: int, row_y: int, kind: str) -> None:
        seen: list[dict[str, Any]] = []
        for r in rows:
            if all(s["other_chain_id"] != r["other_chain_id"] or s["job_id"] != r["job_id"] for s in seen):
                seen.append(r)
        for i, r in enumerate(seen[:MAX_PER_ROW]):
            x = _row_x(i, SIDE_GAP)
            g.nodes.append(
                Node(x, row_y, str(r["other_type_name"]), str(r["other_chain_id"])[:8],
                     str(r["other_status"]), chain_href(r["other_chain_id"]))
            )
            jx = job_pos.get(r["job_id"]) if kind == "blocker" else _last_x(job_pos, jobs)
            if jx is None:
                continue
            if kind == "blocker":
                g.edges.append(Edge(x + BOX_W // 2, row_y + BOX_H, jx + BOX_W // 2, job_y, kind))
            else:
                g.edges.append(Edge(jx + BOX_W // 2, job_y + BOX_H, x + BOX_W // 2, row_y, kind))
        hidden = total - min(len(seen), MAX_PER_ROW)
        if hidden > 0:
            x = _row_x(min(len(seen), MAX_PER_ROW), SIDE_GAP)
            g.nodes.append(Node(x, row_y, f"+{hidden} more", "see the list below", None, None))

    if waits_on:
        side_row(waits_on, total_on, top_y, "blocker")
    if waited_by:
        side_row(waited_by, total_by, bottom_y, "dependent")
    g.width = max((n.x for n in g.nodes), default=0) + BOX_W + MARGIN
    return g


def _last_x(job_pos: dict[UUID, int], jobs: list[dict[str, Any]]) -> int | None:
    return job_pos.get(jobs[-1]["id"]) if jobs else None
