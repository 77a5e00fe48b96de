"""Every ```python snippet of docs/observability.md runs, in order, against
a fresh database (the snippets' own asserts are the checks). They install
the SDK's providers themselves: the API's defaults are restored afterwards,
so the rest of the suite runs without telemetry."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

from otel_support import reset_globals

DOC = Path(__file__).resolve().parents[1] / "docs" / "observability.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_observability_doc_snippets_run(dsn: str) -> None:
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) == 2
    module = types.ModuleType("queuert_observability_doc")
    module.DSN = dsn  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    reset_globals()
    try:
        for i, block in enumerate(blocks, start=1):
            code = compile(block, f"docs/observability.md[python block {i}]", "exec")
            exec(code, module.__dict__)  # noqa: S102 - the documented snippets are the test
    finally:
        reset_globals()
        module.__dict__["tracer_provider"].shutdown()
        del sys.modules[module.__name__]
