"""queuert.testing: helpers for the tests of applications that use queuert.

* pytest fixtures (a plugin registered through the ``pytest11`` entry point,
  active wherever queuert is installed): ``queuert_dsn``, a fresh migrated
  database per test, and ``queuert_conn``, a connection to it; override
  ``queuert_setup`` to create your own tables in every one.
* :func:`drain` / :func:`adrain`: run a worker's handlers in the test's
  process until no job is due; returns every attempt and how it ended.
* :func:`assert_chain_started`, :func:`assert_no_chain_started`,
  :func:`started_chains` (and ``a``-prefixed async twins): what your code
  started, in the open transaction or in the database.

See docs/testing.md.
"""

from __future__ import annotations

from queuert.testing.assertions import (
    ANY,
    aassert_chain_started,
    aassert_no_chain_started,
    assert_chain_started,
    assert_no_chain_started,
    astarted_chains,
    started_chains,
)
from queuert.testing.databases import DatabaseFactory, TestServer
from queuert.testing.drain import Attempt, DrainResult, DrainTimeout, Outcome, adrain, drain

__all__ = [
    "ANY",
    "Attempt",
    "DatabaseFactory",
    "DrainResult",
    "DrainTimeout",
    "Outcome",
    "TestServer",
    "aassert_chain_started",
    "aassert_no_chain_started",
    "adrain",
    "assert_chain_started",
    "assert_no_chain_started",
    "astarted_chains",
    "drain",
    "started_chains",
]
