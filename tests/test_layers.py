"""The layering of STYLE.md §1–2, read from the source with `ast`: forbidden imports, docstrings, __all__."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hub", "agent_sdk", "cli")
LAZY_SERVER_MODULES = {"cli.hub", "cli.ops"}  # may reach hub.server / hub.log, inside functions only

CORE_FORBIDDEN = (
    "hub.log",
    "hub.server",
    "asyncio",
    "websockets",
    "sqlalchemy",
    "time",
    "random",
    "os",
    "logging",
)


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


def violations(path: Path, tree: ast.Module | None = None) -> list[str]:
    """The layering rules broken by one source file (or by `tree` standing in for it)."""
    me = module_name(path)
    bad: list[str] = []
    for imp in imports(path, tree or parse(path)):
        name = imp.module
        where = f"{path.relative_to(ROOT)}:{imp.line} imports {name}"
        if within(me, "hub.protocol"):
            if within(name, "hub") and not within(name, "hub.protocol") and name != "hub":
                bad.append(f"{where}: hub.protocol imports nothing else from hub")
        elif within(me, "hub.core"):
            for banned in CORE_FORBIDDEN:
                if within(name, banned):
                    bad.append(f"{where}: hub.core is pure (no {banned})")
        elif within(me, "hub.log"):
            for banned in ("hub.core", "hub.server"):
                if within(name, banned):
                    bad.append(f"{where}: hub.log never imports {banned}")
        elif within(me, "agent_sdk") or within(me, "cli"):
            if within(name, "hub.core"):
                bad.append(f"{where}: clients see only the wire (hub.protocol), never hub.core")
            for layer in ("hub.log", "hub.server"):
                if within(name, layer):
                    if me not in LAZY_SERVER_MODULES:
                        bad.append(f"{where}: only cli/hub.py and cli/ops.py may reach {layer}")
                    elif not imp.in_function:
                        bad.append(f"{where}: {layer} is imported lazily, inside the command only")
    return bad


FILES = source_files()
IDS = [str(p.relative_to(ROOT)) for p in FILES]


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_no_forbidden_import(path: Path) -> None:
    """No module imports across a layer it must not cross (STYLE.md §1–2)."""
    assert violations(path) == []


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
        ("hub.core.x", "import timeit", False),
        ("hub.core.x", "from hub import __version__", False),
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
