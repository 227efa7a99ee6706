"""No import cycle inside ``ccwatch``: the dependency direction drawn in docs/architecture.md holds,
and no module has to import another late (inside a function) to break a loop. Imports made only for
type checking count too: they are dependencies all the same."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "ccwatch"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, modules: set[str], here: str) -> set[str]:
    """The ccwatch modules a module imports anywhere: at the top, inside functions, for typing.
    ``from ccwatch.pkg import sub`` depends on the submodule, not on the package's ``__init__``."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{here}: ccwatch imports absolutely"
            base = node.module or ""
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                         for a in node.names)
    return {m for m in found if m in modules and m != here}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(ast.parse(path.read_text(encoding="utf-8")), set(files), name)
            for name, path in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_imports_and_cycles() -> None:
    """The checker itself: known edges, one inside a function, one for typing; a planted loop."""
    graph = _graph()
    assert "ccwatch.ledger" in graph["ccwatch.pipeline.dispatch"]
    assert "ccwatch.emulator.app" in graph["ccwatch.emulator.server"]
    assert all(importlib.util.find_spec(name) is not None for name in graph)
    tree = ast.parse("def f():\n    from ccwatch import errors\n"
                     "if TYPE_CHECKING:\n    from ccwatch.clock import Clock\n")
    modules = {"ccwatch", "ccwatch.errors", "ccwatch.clock"}
    assert _imports(tree, modules, "ccwatch.x") == {"ccwatch.errors", "ccwatch.clock"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle() -> None:
    """The emulator's ``server`` builds the WSGI app, so ``core`` does not import ``app``."""
    assert _cycles(_graph()) == []
    assert "ccwatch.emulator.app" not in _graph()["ccwatch.emulator.core"]
