"""queuert.client and queuert.aio are twins: the same functions, parameters,
defaults, annotations and overloads, modulo ``async`` and the connection type.

Read from the modules' source (``ast``), so ``@overload`` stubs are compared
too, on every Python version; the runtime objects confirm which side is async.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from types import ModuleType

import queuert
from queuert import aio, client

#: the only words in which the two surfaces may differ
ASYNC_TO_SYNC = {"AsyncConnectionLike": "ConnectionLike"}


def surface(module: ModuleType) -> dict[str, list[str]]:
    """Public name -> one line per definition (overloads first, in source
    order): decorators, parameters with kinds, annotations and defaults, and
    the return annotation; the async side's words mapped to the sync side's."""
    tree = ast.parse(Path(inspect.getfile(module)).read_text())
    public = set(module.__all__)
    out: dict[str, list[str]] = {}
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if node.name not in public:
            continue
        line = _describe(node)
        for old, new in ASYNC_TO_SYNC.items():
            line = line.replace(old, new)
        out.setdefault(node.name, []).append(line)
    return out


def _describe(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    a = node.args

    def param(arg: ast.arg, kind: str, default: ast.expr | None) -> str:
        text = f"{kind} {arg.arg}"
        if arg.annotation is not None:
            text += f": {ast.unparse(arg.annotation)}"
        if default is not None:
            text += f" = {ast.unparse(default)}"
        return text

    positional = a.posonlyargs + a.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults))
    defaults += list(a.defaults)
    parts = [
        param(arg, "positional-only" if i < len(a.posonlyargs) else "positional", d)
        for i, (arg, d) in enumerate(zip(positional, defaults))
    ]
    if a.vararg is not None:
        parts.append(param(a.vararg, "*", None))
    parts += [param(arg, "keyword", d) for arg, d in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg is not None:
        parts.append(param(a.kwarg, "**", None))
    decorators = " ".join(f"@{ast.unparse(d)}" for d in node.decorator_list)
    returns = ast.unparse(node.returns) if node.returns is not None else ""
    return f"{decorators} ({', '.join(parts)}) -> {returns}"


def drift(sync: dict[str, list[str]], async_: dict[str, list[str]]) -> list[str]:
    problems = [f"only in queuert.client: {n}" for n in sorted(set(sync) - set(async_))]
    problems += [f"only in queuert.aio: {n}" for n in sorted(set(async_) - set(sync))]
    for name in sorted(set(sync) & set(async_)):
        if sync[name] != async_[name]:
            problems.append(
                f"{name} differs:\n  client: {sync[name]}\n  aio:    {async_[name]}"
            )
    return problems


def test_the_sync_and_async_clients_have_the_same_surface() -> None:
    assert sorted(client.__all__) == sorted(aio.__all__)
    problems = drift(surface(client), surface(aio))
    assert not problems, "\n".join(problems)
    # every public function is there, in both, with its overloads
    assert set(surface(client)) == set(client.__all__)
    assert len(surface(client)["start_chain"]) == 4  # three overloads and the implementation


def test_aio_is_async_and_client_is_not() -> None:
    for name in client.__all__:
        assert not inspect.iscoroutinefunction(getattr(client, name)), name
        assert inspect.iscoroutinefunction(getattr(aio, name)), name
    # the package root exports the sync client
    for name in client.__all__:
        assert getattr(queuert, name) is getattr(client, name)


def test_drift_is_detected() -> None:
    """The comparison is not vacuous: a renamed parameter, a changed default
    and a missing function are each reported."""
    base = surface(client)
    renamed = {**base, "get_chain": [base["get_chain"][0].replace("chain_id", "chain")]}
    defaults = {**base, "list_chains": [base["list_chains"][0].replace("= 50", "= 20")]}
    missing = {k: v for k, v in base.items() if k != "retry_jobs"}
    assert drift(base, renamed) and "get_chain" in drift(base, renamed)[0]
    assert drift(base, defaults) and "list_chains" in drift(base, defaults)[0]
    assert drift(base, missing) == ["only in queuert.client: retry_jobs"]
