"""The layering of STYLE.md §1–2, read from the source with `ast`: forbidden imports, docstrings, __all__."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hub", "agent_sdk", "cli")
LAZY_SERVER_MODULES = {"cli.hub", "cli.ops"}  # may reach hub.server / hub.log, inside functions only

# Standard-library modules with no I/O, clock, randomness or environment: what a pure layer may use.
PURE_STDLIB = frozenset(
    {
        "__future__",
        "abc",
        "bisect",
        "collections",
        "copy",
        "dataclasses",
        "enum",
        "functools",
        "hashlib",
        "heapq",
        "hmac",
        "itertools",
        "math",
        "operator",
        "re",
        "types",
        "typing",
    }
)
# What each package may import (a module may always import its own package); anything else is a crossing.
ALLOWED: dict[str, frozenset[str]] = {
    "hub.protocol": PURE_STDLIB | {"msgspec"},
    "hub.core": PURE_STDLIB
    | {"msgspec", "hub.protocol", "hub.config", "hub.version", "ipaddress"}
    | {"datetime", "importlib"}  # cel.py: CEL timestamps; its engines load on first use
    | {"ctypes"},  # cel.py: pins None against cel-expr-python's lost references (cel._pin_none)
    "hub.log": {"hub.protocol", "hub.config", "msgspec", "sqlalchemy", "psycopg", "sqlite3"},
    "hub.server": {"hub.core", "hub.log", "hub.protocol", "hub.config", "hub.version"}
    | {"msgspec", "websockets", "prometheus_client", "uvloop"},
    "agent_sdk": {"hub.protocol", "msgspec", "websockets"},
    "cli": {"agent_sdk", "hub.protocol", "hub.config", "hub.version", "msgspec", "click", "mcp", "uvloop"}
    | {"uvicorn"},  # cli/mcp.py: the ASGI server under `synapse mcp --http` (a dependency of mcp)
    "hub": {"hub.version", "hub.config", "hub.server"},  # hub/__init__: lazy exports only
    "hub.__main__": {"cli"},
    "hub.config": PURE_STDLIB | {"msgspec", "ipaddress"},
    "hub.version": PURE_STDLIB,
}
PURE = ("hub.protocol", "hub.core")  # no I/O, time, randomness or environment, even from the stdlib
LAZY_SERVER_MODULES = {"cli.hub", "cli.ops"}  # may reach hub.server / hub.log, inside functions only
CORE_FORBIDDEN = ("os", "time", "random", "secrets", "asyncio", "logging", "socket", "threading", "uuid")


@dataclass(frozen=True)
class Import:
    """One imported module name, where it is, and whether it sits inside a function."""

    module: str
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    files = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "static" not in p.parts)
    assert files, "no sources found"
    return files


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def resolve(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names (relative imports resolved against the file)."""
    if not node.level:
        return node.module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports(path: Path, tree: ast.Module) -> list[Import]:
    """Every module `path` imports, `from x import y` counted as both x and x.y (y may be a module)."""
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend(Import(alias.name, child.lineno, inside) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = resolve(path, child)
                found.append(Import(base, child.lineno, inside))
                found.extend(Import(f"{base}.{alias.name}", child.lineno, inside) for alias in child.names)
            visit(child, inside)

    visit(tree, False)
    return found


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def package_of(module: str) -> str:
    """The layer a module belongs to (the longest ALLOWED key that contains it)."""
    return max((p for p in ALLOWED if within(module, p)), key=len)


def violations(path: Path, tree: ast.Module | None = None) -> list[str]:
    """The layering rules broken by one source file (or by `tree` standing in for it)."""
    me = module_name(path)
    layer = package_of(me)
    allowed = ALLOWED[layer]
    stdlib = sys.stdlib_module_names
    bad: list[str] = []
    for imp in imports(path, tree or parse(path)):
        name = imp.module
        where = f"{path.relative_to(ROOT)}:{imp.line} imports {name}"
        top = name.split(".")[0]
        if within(name, layer) or name in ("hub", "agent_sdk", "cli") and within(me, name):
            continue
        if layer in PURE and top in CORE_FORBIDDEN:
            bad.append(f"{where}: {layer} is pure (no {top}: no I/O, time, randomness or environment)")
            continue
        if me in LAZY_SERVER_MODULES and (within(name, "hub.server") or within(name, "hub.log")):
            if not imp.in_function:
                bad.append(f"{where}: {name} is imported lazily, inside the command only")
            continue
        if any(within(name, ok) for ok in allowed):
            continue
        if top in stdlib and (layer not in PURE or top in PURE_STDLIB):
            continue
        bad.append(
            f"{where}: {layer} may import only {', '.join(sorted(allowed - PURE_STDLIB))} (and the stdlib)"
        )
    return bad


def graph() -> dict[str, set[str]]:
    """Every project module → the project modules it imports (anywhere in the file, type-only imports too)."""
    modules = {module_name(p): p for p in FILES}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for me, path in modules.items():
        found = imports(path, parse(path))
        named = {(i.line, i.module.rpartition(".")[0]) for i in found if i.module in modules}
        for imp in found:
            name = imp.module
            if (imp.line, name) in named:
                continue  # `from pkg import module`: the module, not the package

            while name and name not in modules:  # `from a.b import c`: the module a.b.c, else a.b
                name = name.rpartition(".")[0]
            if name and name != me and not (imp.in_function and me in ("hub",)):
                edges[me].add(name)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


FILES = source_files()
IDS = [str(p.relative_to(ROOT)) for p in FILES]


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_no_forbidden_import(path: Path) -> None:
    """No module imports across a layer it must not cross (STYLE.md §1–2)."""
    assert violations(path) == []


def test_no_import_cycles() -> None:
    """No two modules of hub, agent_sdk or cli import each other, directly or around a circle (type-only
    imports included; hub/__init__'s lazy exports excepted)."""
    assert cycles(graph()) == []


def test_the_cycle_finder_itself() -> None:
    """The cycle finder reports a circle and nothing else."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def is_stub(path: Path, tree: ast.Module) -> bool:
    """An __init__/__main__ with nothing but a docstring, imports and bare calls (no definitions)."""
    if path.name not in ("__init__.py", "__main__.py"):
        return False
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Expr):  # the docstring, or `main()` in __main__
            continue
        return False
    return True


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_module_has_docstring_future_import_and_all(path: Path) -> None:
    """Every module opens with a docstring, `from __future__ import annotations` and `__all__` (stubs excepted)."""
    tree = parse(path)
    assert ast.get_docstring(tree), f"{path.relative_to(ROOT)} has no module docstring"
    if is_stub(path, tree):
        return
    future = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(a.name == "annotations" for a in node.names)
        for node in tree.body
    )
    assert future, f"{path.relative_to(ROOT)} lacks `from __future__ import annotations`"
    names = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    assert "__all__" in names, f"{path.relative_to(ROOT)} has no __all__"


def snippet_violations(module: str, source: str) -> list[str]:
    """Run the import rules on a snippet as if it were `module` (to test the checker itself)."""
    path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    return violations(path, ast.parse(source))


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        ("hub.protocol.x", "from hub.core import machine", True),
        ("hub.protocol.x", "from hub import config", True),
        ("hub.protocol.x", "from . import types", False),
        ("hub.protocol.x", "from ..core import machine", True),
        ("hub.core.x", "import time", True),
        ("hub.core.x", "from os import path", True),
        ("hub.core.x", "import os.path", True),
        ("hub.core.x", "def f():\n    import logging", True),
        ("hub.core.x", "from hub.log.store import EventLog", True),
        ("hub.core.x", "import timeit", True),
        ("hub.core.x", "import heapq", False),
        ("hub.core.x", "from hub.version import __version__", False),
        ("hub.core.x", "import secrets", True),
        ("hub.core.x", "import socket", True),
        ("hub.protocol.x", "import datetime", True),
        ("hub.core.x", "from hub.server import hub", True),
        ("agent_sdk.x", "import click", True),
        ("hub.log.x", "import websockets", True),
        ("hub.log.x", "from hub.core import snapshot", True),
        ("hub.log.x", "from hub.protocol.codec import encode", False),
        ("agent_sdk.x", "from hub.core.machine import Machine", True),
        ("agent_sdk.x", "from hub.protocol.codec import encode", False),
        ("cli.x", "def f():\n    from hub.server.hub import Hub", True),
        ("cli.hub", "from hub.server.hub import Hub", True),
        ("cli.hub", "def f():\n    from hub.server.hub import Hub", False),
        ("cli.ops", "def f():\n    from hub.log.store import EventLog", False),
        ("cli.hub", "def f():\n    from hub.core import snapshot", True),
    ],
)
def test_the_checker_itself(module: str, source: str, broken: bool) -> None:
    """The import checker flags exactly the crossings STYLE.md forbids."""
    assert bool(snippet_violations(module, source)) is broken
