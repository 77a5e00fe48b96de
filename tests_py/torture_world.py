"""What test_torture.py (PostgreSQL) and test_torture_sqlite.py share:
loading the torture scripts (torture/) as modules, and the honest little
world both build (every kind of chain, both modes) before planting one
corruption on it. Each backend's World does the writing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol
from uuid import UUID

TORTURE = Path(__file__).resolve().parent / "torture"


def load_torture(name: str) -> ModuleType:
    """torture/NAME.py as a module of its own (torture/ on sys.path: the
    scripts import each other by plain name)."""
    if str(TORTURE) not in sys.path:
        sys.path.insert(0, str(TORTURE))
    spec = importlib.util.spec_from_file_location(f"queuert_torture_{name}", TORTURE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class World(Protocol):
    def chain(self, type_name: str, kind: str, *, n: int | None = ..., always_fail: bool = ...,
              blockers: list[UUID] | None = ..., register: bool = ...) -> UUID: ...

    def run(self, worker: str, type_name: str, *, then: str | None = ..., effects: int = ...,
            record: bool = ..., output: dict[str, Any] | None = ...) -> UUID: ...

    def fail(self, worker: str, type_name: str, error: str) -> tuple[UUID, int]: ...


def build_honest_world(w: World) -> None:
    """One of everything, finished correctly: 7 chains, 5 atomic and 5
    staged jobs, one capped chain failed as expected."""
    blockers = [w.chain("a.single", "single"), w.chain("s.single", "single")]
    w.chain("s.join", "join", n=2, blockers=blockers)
    w.run("w1", "a.single")
    w.run("w2", "s.single")
    w.run("w2", "s.join")
    w.chain("a.step1", "step1")
    w.run("w1", "a.step1", then="a.step2")
    w.run("w3", "a.step2", then="a.step3")
    w.run("w1", "a.step3")
    w.chain("s.loop", "loop", n=1)
    w.run("w2", "s.loop", then="s.loop")
    w.run("w4", "s.loop")
    w.chain("a.capped", "capped", always_fail=True)
    for attempt in range(1, 4):
        w.fail("w1", "a.capped", f"Flaky: capped job always fails (attempt {attempt})")
    w.chain("s.capped", "capped")
    w.run("w2", "s.capped")
