"""The import graph follows the design: no cycle between parts or files, no forbidden direction.

Parts are automtl's sub-packages (``automtl.training``) and top-level modules
(``automtl.api``); built-in plugins are parts of their own. Between parts,
imports inside ``if TYPE_CHECKING:`` blocks are annotations only and do not
count; imports inside functions (lazy imports) do. Between files every import
counts, annotations included: a cycle there is a layering smell even when
Python never runs it.
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path
from typing import Any

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
    ("automtl.rundir", "automtl.run"), ("automtl.rundir", "automtl.training"), ("automtl.rundir", "automtl.backends"),
    ("automtl.export", "automtl.run"), ("automtl.export", "automtl.training"), ("automtl.export", "automtl.backends"),
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


def _statements(path: Path, package: str | None = None,
                annotations: bool = False) -> list[tuple[str, tuple[str, ...] | None]]:
    """``(module, names)`` of each import a file runs (lazily or not; with ``annotations``, those under
    ``if TYPE_CHECKING:`` too): ``names`` None for ``import module``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    if package is None:
        package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: list[tuple[str, tuple[str, ...] | None]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node) and not annotations:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, tuple(alias.name for alias in node.names)))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _imports(path: Path, package: str | None = None) -> list[str]:
    """Absolute names of the modules a file imports at run time (lazily or not); ``package``: the file's."""
    found: list[str] = []
    for module, names in _statements(path, package):
        found.append(module)
        found.extend(f"{module}.{name}" for name in names or ())
    return found


#: Files outside ``automtl/backends/`` that may import the Optuna backend's modules: the commands that run
#: Optuna's own tools (its dashboard, its gRPC storage proxy).
OPTUNA_TOOLS = {"automtl/commands/dashboard.py", "automtl/commands/storage.py"}


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


#: The public API re-exports what every axis builds on, from the parts that define it (that is its job),
#: while parts use its task and input types: its outgoing arrows are no layering. Cycles through it are
#: still refused file by file (:func:`test_no_cycle_between_files`).
FACADE = "automtl.api"


def _first_cycle(edges: dict[str, Any]) -> list[str] | None:
    """A cycle of ``edges`` (node -> its successors) as ``[a, b, ..., a]``, or None (depth-first search)."""
    seen: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        seen[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if seen.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in seen and (found := walk(nxt)):
                return found
        stack.pop()
        seen[node] = 2
        return None

    for node in sorted(edges):
        if node not in seen and (found := walk(node)):
            return found
    return None


def test_no_cycle_between_parts():
    edges = {src: dsts for src, dsts in _edges().items() if src != FACADE}
    cycle = _first_cycle(edges)
    if cycle:
        where = [edges[x][y] for x, y in zip(cycle, cycle[1:])]
        pytest.fail(f"import cycle {' -> '.join(cycle)} (through {', '.join(where)})")


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


@functools.lru_cache(maxsize=None)
def _file_edges() -> dict[str, set[str]]:
    """module -> the modules of automtl and its plugins it imports (lazily, eagerly or for annotations).

    ``from package import submodule`` is an arrow to the submodule only (the
    package's ``__init__`` runs first, as for any submodule, and is no arrow of
    this file); ``from package import name`` is an arrow to the package.
    """
    modules = {_module_name(p): p for p in _files()}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        for module, names in _statements(path, annotations=True):
            subs = {f"{module}.{n}" for n in names or ()} & set(modules)
            targets = subs | ({module} if names is None or len(subs) < len(names) else set())
            edges.setdefault(name, set()).update(t for t in targets if t in modules and t != name)
    return edges


def test_no_cycle_between_files():
    """Within a part too: a file never imports, through any chain, a file that imports it."""
    cycle = _first_cycle(_file_edges())
    assert cycle is None, f"import cycle between files: {' -> '.join(cycle or [])}"


def test_the_cycle_check_finds_a_cycle_and_passes_a_chain():
    assert _first_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _first_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_file_cycle_check_sees_imports_inside_functions(tmp_path):
    """A lazy import is an arrow too (the check would be blind to the cycles it exists to catch otherwise)."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from automtl.core import registry\n    import automtl.api\n"
                      "    from .phases import Search\n")
    found = set(_imports(source, package="automtl.run"))
    assert {"automtl.core.registry", "automtl.api", "automtl.run.phases"} <= found


def test_the_file_cycle_check_sees_imports_for_annotations(tmp_path):
    """``if TYPE_CHECKING:`` imports are arrows between files (two modules typing each other are one layer)."""
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from automtl.api import Task\n")
    assert "automtl.api" not in {m for m, _ in _statements(source, package="automtl.data")}
    assert "automtl.api" in {m for m, _ in _statements(source, package="automtl.data", annotations=True)}


def test_only_the_optuna_backend_and_its_tools_import_it():
    """Run folders, reports and the search reach a backend through its declared spec, never its modules."""
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel.startswith("automtl/backends/") or rel in OPTUNA_TOOLS:
            continue
        offenders += [f"{rel} imports {name}" for name in _imports(path)
                      if name == "automtl.backends.optuna" or name.startswith("automtl.backends.optuna.")]
    assert not offenders, offenders


#: Core files that serve every plugin alike: what a built-in plugin adds (images, boxes, COCO files) is
#: asked of it through hooks of :mod:`automtl.api`, so none of its words appears in them.
PLUGIN_NEUTRAL = {
    "automtl/export/predict.py": ("coco", "image", "box", "detection"),
    "automtl/export/table.py": ("coco", "image", "box", "detection"),
}


@pytest.mark.parametrize("path", sorted(PLUGIN_NEUTRAL))
def test_the_core_names_no_built_in_plugin_concept(path):
    text = (ROOT / path).read_text().lower()
    named = [word for word in PLUGIN_NEUTRAL[path] if word in text]
    assert not named, f"{path} names {', '.join(named)}: ask the plugin through a hook of automtl.api"


#: Strings of the core that equal a built-in plugin's name by coincidence or by design, with why.
NOT_A_PLUGIN = {
    ("automtl/deploy/kubernetes.py", "image"): "a container's image",
    ("automtl/export/predict.py", "array"): "the manifest key naming an NPZ array",
}


def _built_in_plugin_names() -> set[str]:
    """The entry-point names of the plugins that ship with automtl but live outside the core (``plugins/``)."""
    import tomllib

    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    return {name for group in groups.values() for name, target in group.items()
            if target.split(":")[0].split(".")[0].startswith("automtl_")}


def _demo_modules() -> set[str]:
    """Core modules that write a demo: their experiment file names built-in types, as a user's would."""
    import tomllib

    demos = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["automtl.demos"]
    return {target.split(":")[0].replace(".", "/") + ".py" for target in demos.values()}


def test_no_built_in_plugin_is_named_in_the_core():
    """No string of the core (docstrings aside) is a built-in plugin's type name or one of its parameters
    (``tabular``, ``image.stages``): what the core needs of a plugin it asks through a hook, as of a
    third party's."""
    names, demos, found = _built_in_plugin_names(), _demo_modules(), []
    for path in sorted(CORE.rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel in demos:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in docstrings:
                continue
            hit = next((n for n in names if node.value == n or node.value.startswith(n + ".")), None)
            if hit and (rel, hit) not in NOT_A_PLUGIN:
                found.append(f"{rel}:{node.lineno} {node.value!r}")
    assert names >= {"tabular", "image", "text", "classification", "detection", "coco"}
    assert not found, found


def test_the_plugin_name_check_finds_a_parameter_name(tmp_path, monkeypatch):
    core = tmp_path / "automtl"
    core.mkdir()
    (core / "m.py").write_text('"""Reads tabular data."""\nSHOWN = "tabular.numeric"\n')
    monkeypatch.setattr(sys.modules[__name__], "CORE", core)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "_built_in_plugin_names", lambda: {"tabular", "image", "text",
                                                                                "classification", "detection", "coco"})
    monkeypatch.setattr(sys.modules[__name__], "_demo_modules", set)
    with pytest.raises(AssertionError, match=r"automtl/m.py:2 'tabular.numeric'"):
        test_no_built_in_plugin_is_named_in_the_core()
