"""docs/architecture.md against the code: every module listed, the dependency direction kept.

The imports are read from the source (``ast``), so a lazy import inside a function and one under
``TYPE_CHECKING`` count as much as one at the top.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ccwatch"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

# Left to right in docs/architecture.md: a module may import its own layer and those after it.
LAYERS = ("commands", "daemon", "pipeline", "stages", "config", "edges")
EDGES_IMPORTED_BY_EDGES = {"ccwatch", "ccwatch.errors", "ccwatch.clock", "ccwatch.fs",
                           "ccwatch.mounts", "ccwatch.wsgiserve"}
EMULATOR_USERS = {"ccwatch.commands.cli", "ccwatch.daemon"}
EMULATOR_USES = {"ccwatch.clock", "ccwatch.wsgiserve"}


@dataclass(frozen=True)
class Import:
    target: str
    in_function: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> list[Import]:
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, in_function) for a in child.names
                             if a.name.split(".")[0] == "ccwatch")
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module \
                    and child.module.split(".")[0] == "ccwatch":
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    found.append(Import(full if full in MODULES else child.module, in_function))
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def layer(module: str) -> str:
    """``commands`` … ``edges``, or ``emulator``: the package's root and top modules are edges."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        return "commands"
    top = parts[1] if len(parts) > 1 else ""
    return top if top in LAYERS or top == "emulator" else "edges"


def test_layers_are_as_documented() -> None:
    """Each listed layer exists, and each top-level module is a layer or an edge."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    assert " ──→ ".join(LAYERS[:5]) + " ──→ edges" in text
    for name in ("commands", "pipeline", "stages", "config", "emulator"):
        assert (PACKAGE / name / "__init__.py").is_file()


def _same_edge_package(module: str, target: str) -> bool:
    """An edge that is a package (``ledger/``) is one concern: its modules use each other."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    return package != "ccwatch" and (target == package or target.startswith(package + "."))


@pytest.mark.parametrize("module", [m for m in MODULES if layer(m) != "emulator"])
def test_no_module_imports_a_layer_above_it(module: str) -> None:
    """commands → daemon → pipeline → stages → config → edges, never backwards."""
    own = LAYERS.index(layer(module))
    for imp in imports_of(MODULES[module]):
        target = layer(imp.target)
        if target == "emulator":
            continue  # test_emulator_is_started_not_used
        assert LAYERS.index(target) >= own, f"{module} ({layer(module)}) imports {imp.target}"
        if layer(module) == "edges" and not _same_edge_package(module, imp.target):
            assert imp.target in EDGES_IMPORTED_BY_EDGES, f"edge {module} imports {imp.target}"


def test_emulator_is_started_not_used() -> None:
    """The core imports the emulator only inside the functions that start it; the emulator uses
    nothing of the core but the clock and the WSGI server."""
    for module, path in MODULES.items():
        for imp in imports_of(path):
            if layer(module) == "emulator":
                assert layer(imp.target) == "emulator" or imp.target in EMULATOR_USES, \
                    f"{module} imports {imp.target}"
            elif layer(imp.target) == "emulator":
                assert module in EMULATOR_USERS and imp.in_function, f"{module} imports {imp.target}"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
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


def test_no_import_cycle() -> None:
    """No module imports itself through others, not even lazily or for typing only (the emulator's
    ``server`` builds the WSGI app, so ``core`` does not import ``app``)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = {module: {i.target for i in imports_of(path) if i.target in MODULES} - {module}
             for module, path in MODULES.items()}
    assert "ccwatch.emulator.app" in graph["ccwatch.emulator.server"]
    assert cycles(graph) == []


def _listing() -> str:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    match = re.search(r"```\nccwatch/\n(.*?)```", text, re.S)
    assert match, "docs/architecture.md has no ccwatch/ listing"
    return match.group(1)


def _sections(listing: str) -> dict[str, str]:
    """``pkg/`` → the text of its entry (continuation lines are indented deeper)."""
    sections: dict[str, str] = {}
    current = ""
    for line in listing.splitlines():
        if re.match(r"^  \S", line):
            current = line.split()[0]
        sections[current] = sections.get(current, "") + line + "\n"
    return sections


def test_every_module_is_in_the_architecture_listing() -> None:
    listing = _listing()
    sections = _sections(listing)
    for module, path in MODULES.items():
        if path.name == "__init__.py":
            continue
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) == 1:
            assert rel.name in listing, f"{rel.name} is not in docs/architecture.md"
        else:
            entry = sections.get(f"{rel.parts[0]}/", "")
            assert re.search(rf"\b{path.stem}\b", entry), f"{module} is not in docs/architecture.md"


def test_the_listing_names_nothing_that_is_gone() -> None:
    listing = _listing()
    for name in re.findall(r"\b([a-z_]+\.py)\b", listing):
        assert (PACKAGE / name).is_file(), f"docs/architecture.md lists {name}"
    for folder in re.findall(r"^  ([a-z_]+)/", listing, re.M):
        assert (PACKAGE / folder / "__init__.py").is_file(), f"docs/architecture.md lists {folder}/"
    on_disk = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert on_disk == set(re.findall(r"^  ([a-z_]+)/", listing, re.M))
