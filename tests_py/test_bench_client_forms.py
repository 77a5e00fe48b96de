"""create-client's harness (benchmarks/create_client.py): a client form and
its raw form run as adjacent blocks whose order is balanced, and one round
on a real database gives every figure, with the chains really created."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest` (unlike `python -m pytest`) leaves the checkout off the path
    sys.path.insert(0, str(ROOT))

from benchmarks import create_client  # noqa: E402


def test_each_pair_runs_each_order_equally_often_and_in_each_place() -> None:
    firsts: Counter[str] = Counter()
    sync_pair_first = 0
    for r in range(8):
        pairs = create_client.pair_order(r)
        assert {frozenset(p) for p in pairs} == {
            frozenset({"raw sync", "client"}), frozenset({"aio", "raw async"})
        }
        firsts.update(first for first, _ in pairs)
        sync_pair_first += "raw sync" in pairs[0]
        # in every round one pair starts with its raw form, the other with its client form
        assert sorted(first.startswith("raw") for first, _ in pairs) == [False, True]
    assert firsts == {"raw sync": 4, "client": 4, "raw async": 4, "aio": 4}
    assert sync_pair_first == 4


def test_the_abba_ratio_cancels_a_blocks_place_in_its_pair() -> None:
    # the second block of each pair 10 % slower, whichever form it is; the
    # client form really 5 % slower than the raw one
    raw, mine = [], []
    for r in range(6):
        raw_first = r % 2 == 0
        raw.append(1.0 * (1.0 if raw_first else 1.1))
        mine.append(1.05 * (1.1 if raw_first else 1.0))
    assert create_client.abba_ratio(raw, mine) == pytest.approx(1 / 1.05)
    assert create_client.abba_ratio([2.0], [1.0]) == 2.0


@pytest.mark.parametrize("batched", [False, True])
def test_one_round_gives_every_figure(dsn: str, batched: bool) -> None:
    out = create_client.client_forms(dsn, 1, batched=batched)
    assert set(out) == (
        {f"{form} / floor" for form in create_client.FORMS}
        | {"client / raw sync", "aio / raw async", "client CPU over raw sync", "aio CPU over raw async"}
    )
    assert all(v > 0 for k, v in out.items() if "CPU" not in k)
    size, block = (1000, create_client.CLIENT_BATCH_BLOCK) if batched else (1, create_client.CLIENT_SINGLE_BLOCK)
    with psycopg.connect(dsn) as conn:
        chains = conn.execute("SELECT count(*) FROM queuert.job").fetchone()
        floor = conn.execute("SELECT count(*) FROM floor_job").fetchone()
    # warm-up: one block per form and the floor's; then 2 floor blocks and 4 form blocks
    assert chains == (4 * 2 * block * size,)
    assert floor == (3 * block * size,)
