"""The worker's notify policy (queuert._worker.notify_policy): what its
transactions leave to the engine and what it publishes itself, per notifier,
and that the setting it picks is what the engine reads."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from queuert._worker.notify_policy import NotifyPolicy
from queuert._worker.pg_sql import Texts
from queuert.notify import InProcessNotifier, NullNotifier, PostgresNotifier
from queuert.notify.nats import NatsNotifier
from queuert.notify.redis import RedisNotifier


def test_the_policy_per_notifier() -> None:
    pg = PostgresNotifier("dbname=unused")
    table = {
        (None, True): NotifyPolicy("job_lost,job_ready_unblocked", True, False),
        (pg, True): NotifyPolicy("job_lost,job_ready_unblocked", True, False),
        (pg, False): NotifyPolicy(None, False, False),
        (InProcessNotifier(), True): NotifyPolicy("job_lost", True, True),
        (InProcessNotifier(), False): NotifyPolicy(None, False, True),
    }
    for (notifier, batch), expected in table.items():
        assert NotifyPolicy.of(notifier, batch) == expected
    # a broker or no notifications at all: the engine sends none, batched or not
    for notifier in (RedisNotifier("redis://unused"), NatsNotifier("nats://unused"), NullNotifier()):
        for batch in (True, False):
            policy = NotifyPolicy.of(notifier, batch)
            assert policy == NotifyPolicy("none", False, True)
            assert policy.reap_setting == "none" and policy.publishes
    assert NotifyPolicy.of(None, True).reap_setting is None  # the engine announces reaped jobs
    assert NotifyPolicy.of(pg, False).publishes is False


@pytest.mark.parametrize("setting", ["none", "job_lost", "job_lost,job_ready_unblocked"])
def test_set_local_is_what_the_engine_reads_in_a_one_round_trip_transaction(
    conn: psycopg.Connection[Any], setting: str
) -> None:
    """The worker's flush is one multi-statement query (an implicit
    transaction) that begins with the policy's SET LOCAL: it holds for the
    statements after it and is gone after."""
    texts = Texts.for_schema("queuert", setting, NotifyPolicy(setting, False, True).reap_setting)
    statement = texts.notify_setting_local
    assert statement is not None
    assert texts.reap_setting_local == (statement if setting == "none" else None)
    conn.autocommit = True
    cur = psycopg.ClientCursor(conn)
    cur.execute(
        f"{statement}; SELECT queuert._notify_enabled('job_ready'), queuert._notify_enabled('job_lost')",
        prepare=False,
    )
    cur.nextset()
    assert cur.fetchone() == (False, setting != "none")
    assert conn.execute("SELECT current_setting('queuert.notify', true)").fetchone() in [(None,), ("",)]
