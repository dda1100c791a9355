"""The import graph follows the design: no cycle between parts, no forbidden direction.

Parts are automtl's sub-packages (``automtl.training``) and top-level modules
(``automtl.api``); built-in plugins are parts of their own. Imports inside
``if TYPE_CHECKING:`` blocks are annotations only and do not count; imports
inside functions (lazy imports) do.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "automtl"
PLUGINS = ROOT / "plugins"

#: (importer, imported) pairs that must never appear.
FORBIDDEN = [
    ("automtl.training", "automtl.backends"), ("automtl.backends", "automtl.training"),
    ("automtl.training", "automtl.run"), ("automtl.training", "automtl.rundir"), ("automtl.training", "automtl.export"),
    ("automtl.backends", "automtl.run"), ("automtl.backends", "automtl.rundir"), ("automtl.backends", "automtl.export"),
    ("automtl.model", "automtl.training"), ("automtl.model", "automtl.backends"), ("automtl.model", "automtl.run"),
    ("automtl.model", "automtl.rundir"), ("automtl.model", "automtl.export"),
    # the run folder and exports read trial records: they never train and never drive a search
    ("automtl.rundir", "automtl.run"), ("automtl.rundir", "automtl.training"), ("automtl.export", "automtl.run"),
    ("automtl.data", "automtl.model"), ("automtl.data", "automtl.training"),
]


def _part_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "automtl":
        if len(parts) == 1:
            return "automtl"
        return f"automtl.{parts[1]}"
    if parts[0].startswith("automtl_"):
        return parts[0]
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(PLUGINS if PLUGINS in path.parents else ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path) -> list[str]:
    """Absolute names of the modules a file imports at run time (lazily or not)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append(module)
            found.extend(f"{module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _files() -> list[Path]:
    return sorted(CORE.rglob("*.py")) + sorted(PLUGINS.rglob("*.py"))


@functools.lru_cache(maxsize=None)
def _edges() -> dict[str, dict[str, str]]:
    """part -> imported part -> one file that makes the edge (for the message)."""
    modules = {_module_name(p) for p in _files()}
    edges: dict[str, dict[str, str]] = {}
    for path in _files():
        src = _part_of(_module_name(path))
        for name in _imports(path):
            # ``from automtl import registry`` names a module; ``from automtl.api import Task`` a symbol
            target = name if name in modules else name.rpartition(".")[0] if name.rpartition(".")[0] in modules else name
            dst = _part_of(target)
            if src and dst and dst != src:
                edges.setdefault(src, {}).setdefault(dst, str(path.relative_to(ROOT)))
    return edges


def test_no_cycle_between_parts():
    edges = _edges()
    seen: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        seen[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, {})):
            if seen.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                where = [edges[a][b] for a, b in zip(cycle, cycle[1:])]
                pytest.fail(f"import cycle {' -> '.join(cycle)} (through {', '.join(where)})")
            if nxt not in seen:
                walk(nxt)
        stack.pop()
        seen[node] = 2

    for node in sorted(edges):
        if node not in seen:
            walk(node)


@pytest.mark.parametrize("importer, imported", FORBIDDEN)
def test_forbidden_direction(importer, imported):
    where = _edges().get(importer, {}).get(imported)
    assert where is None, f"{importer} must not import {imported} ({where})"


def test_the_core_never_imports_a_built_in_plugin():
    bad = {src: {d: f for d, f in dsts.items() if d.startswith("automtl_")}
           for src, dsts in _edges().items() if src.startswith("automtl") and not src.startswith("automtl_")}
    assert not any(bad.values()), bad


def test_plugins_import_only_the_public_api():
    for path in sorted(PLUGINS.rglob("*.py")):
        for name in _imports(path):
            part = _part_of(name)
            if part and part.startswith("automtl") and not part.startswith("automtl_"):
                assert name == "automtl.api" or name.startswith("automtl.api."), f"{path.relative_to(ROOT)} imports {name}"
            if part and part.startswith("automtl_"):
                own = _part_of(_module_name(path))
                assert part == own, f"{path.relative_to(ROOT)} imports another plugin's module {name}"
