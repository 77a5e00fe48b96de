"""The worker's wake-budget gate (queuert._worker.wake_budget) against a real
notifier with budgets (the in-process one) and ones without: an idle worker
takes one unit per wake-up before it claims, a busy one takes none, and a
spent budget leaves it asleep."""

from __future__ import annotations

import asyncio

from queuert._worker.wake_budget import WakeBudget
from queuert.notify import InProcessNotifier, NullNotifier


class Outcomes:
    def __init__(self) -> None:
        self.woken = 0
        self.taken = 0
        self.declined = 0

    def gate(self, notifier: InProcessNotifier | NullNotifier) -> WakeBudget:
        def wake() -> None:
            self.woken += 1

        def taken() -> None:
            self.taken += 1

        def declined() -> None:
            self.declined += 1

        return WakeBudget(notifier, wake, taken, declined)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_idle_worker_takes_one_unit_per_wake_up() -> None:
    notifier = InProcessNotifier()
    await notifier.publish_job_ready({"a": 2})
    seen = Outcomes()
    gate = seen.gate(notifier)
    gate.job_ready("a", idle=True)
    gate.job_ready("a", idle=True)  # heard while the take is in flight: joins it
    await settle()
    assert (seen.woken, seen.taken, seen.declined) == (1, 1, 0)
    assert await notifier.take_wake_hint(["a"]) is True  # the second unit is still there
    assert await notifier.take_wake_hint(["a"]) is False


async def test_a_spent_budget_leaves_the_worker_asleep() -> None:
    notifier = InProcessNotifier()
    seen = Outcomes()
    gate = seen.gate(notifier)
    gate.job_ready("a", idle=True)
    await settle()
    assert (seen.woken, seen.taken, seen.declined) == (0, 0, 1)
    # a later event with a fresh unit of another type wakes it
    await notifier.publish_job_ready({"b": 1})
    gate.job_ready("b", idle=True)
    await settle()
    assert (seen.woken, seen.taken, seen.declined) == (1, 1, 1)


async def test_a_busy_worker_wakes_without_taking_a_unit() -> None:
    notifier = InProcessNotifier()
    await notifier.publish_job_ready({"a": 1})
    seen = Outcomes()
    gate = seen.gate(notifier)
    gate.job_ready("a", idle=False)
    assert (seen.woken, seen.taken) == (1, 0)  # at once, no round trip
    assert await notifier.take_wake_hint(["a"]) is True  # left for an idle worker


async def test_without_budgets_every_event_wakes() -> None:
    seen = Outcomes()
    gate = seen.gate(NullNotifier())
    assert gate.enabled is False
    gate.job_ready("a", idle=True)
    gate.job_ready("a", idle=True)
    assert (seen.woken, seen.taken, seen.declined) == (2, 0, 0)


async def test_close_stops_a_take_in_flight() -> None:
    class Slow(InProcessNotifier):
        async def take_wake_hint(self, type_names: object) -> bool:  # type: ignore[override]
            await asyncio.sleep(60)
            return True

    seen = Outcomes()
    gate = seen.gate(Slow())
    gate.job_ready("a", idle=True)
    await settle()
    await asyncio.wait_for(gate.close(), 5)
    assert (seen.woken, seen.taken, seen.declined) == (0, 0, 0)
