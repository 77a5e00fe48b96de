"""The package's shape: no import cycle inside queuert (imports under
TYPE_CHECKING and inside functions count too: a cycle hidden there is still
one module needing the other), and no module so long it cannot be read in
one sitting unless its reason is written here."""

from __future__ import annotations

import ast
from pathlib import Path

import queuert

PACKAGE = Path(queuert.__file__).parent
MAX_LINES = 500
#: files allowed past MAX_LINES, with the reason
LONG_FILES: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = ["queuert", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The queuert modules ``name`` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            # "from queuert.x import y": y may be a module or a name in x
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in targets:
            # the deepest queuert module the import names
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # a package's __init__ importing its own submodules is not a cycle
    # with them: a submodule importing the package means its __init__
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    return graph


def test_no_import_cycle_in_the_package() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_check_sees_type_checking_and_function_imports(tmp_path: Path) -> None:
    a = tmp_path / "a.py"
    b = tmp_path / "b.py"
    a.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from queuert.b import Thing\n")
    b.write_text("def later():\n    from queuert import a\n    return a\n")
    modules = {"queuert.a": a, "queuert.b": b}
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph == {"queuert.a": {"queuert.b"}, "queuert.b": {"queuert.a"}}
    assert _cycles(graph) == [["queuert.a", "queuert.b"]]


def test_worker_package_init_is_empty() -> None:
    assert (PACKAGE / "_worker" / "__init__.py").read_text(encoding="utf-8") == ""


def test_no_module_is_too_long_without_a_stated_reason() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in sorted(PACKAGE.rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert {k: v for k, v in long.items() if k not in LONG_FILES} == {}
    # a reason for a file that is no longer long is stale
    assert sorted(k for k in LONG_FILES if k not in long) == []


def test_the_internals_map_names_every_worker_module() -> None:
    doc = (PACKAGE.parents[2] / "docs" / "internals.md").read_text(encoding="utf-8")
    modules = sorted(p.name for p in (PACKAGE / "_worker").glob("*.py") if p.name != "__init__.py")
    assert [m for m in modules if m not in doc] == []
