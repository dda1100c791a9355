"""Entry-point discovery of every extension (no imports until one is used).

Each axis is an entry-point group; built-in members register in automtl's own
``pyproject.toml`` exactly as a third-party package would in its own.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Iterator

from automtl.errors import ConfigError

GROUPS = {
    "task": "automtl.tasks",
    "input": "automtl.inputs",
    "sharing": "automtl.sharing",
    "strategy": "automtl.strategies",
    "weighting": "automtl.weightings",
    "backend": "automtl.backends",
    "reader": "automtl.readers",
    "demo": "automtl.demos",
    "format": "automtl.formats",
    "prediction": "automtl.predictions",
}


@dataclass(frozen=True)
class PluginInfo:
    kind: str
    name: str
    target: str
    distribution: str
    version: str


@functools.lru_cache(maxsize=1)
def _all_entry_points() -> metadata.EntryPoints:
    """Every installed entry point, read once per process: each read scans every installed
    package's metadata (about 40 ms here), and checking an experiment asks about ten times."""
    return metadata.entry_points()


#: Bumped whenever the set of plugins changes in this process (see :func:`generation`).
_GENERATION = [0]


def generation() -> int:
    """A number that changes whenever the plugins seen in this process change (caches key on it)."""
    return _GENERATION[0]


def refresh() -> None:
    """Forget the installed entry points (after packages were installed in this process)."""
    _all_entry_points.cache_clear()
    _GENERATION[0] += 1


def entry_points(kind: str) -> dict[str, metadata.EntryPoint]:
    """Registered entry points of one kind, by type name (first one wins on clashes)."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in _all_entry_points().select(group=GROUPS[kind]):
        found.setdefault(ep.name, ep)
    return found


def names(kind: str) -> list[str]:
    """Every member of one kind: the installed ones and those :func:`registered` in this process."""
    return sorted(set(entry_points(kind)) | {name for k, name in _LOCAL if k == kind})


def list_plugins() -> list[PluginInfo]:
    """Every registered task and input type, with the distribution it comes from."""
    rows = []
    for kind in GROUPS:
        for name, ep in sorted(entry_points(kind).items()):
            dist = ep.dist
            rows.append(PluginInfo(kind, name, ep.value, dist.name if dist else "?", dist.version if dist else "?"))
    return rows


#: Plugins used in this process without being installed (see :func:`registered`).
_LOCAL: dict[tuple[str, str], Any] = {}


@contextlib.contextmanager
def registered(kind: str, name: str, obj: Any) -> Iterator[None]:
    """Use ``obj`` as the ``kind`` plugin ``name`` in this process only (contract tests, notebooks).

    Trial processes do not see it: run such searches with ``trials_per_process: 0``.
    """
    _LOCAL[(kind, name)] = obj
    _GENERATION[0] += 1
    try:
        yield
    finally:
        _LOCAL.pop((kind, name), None)
        _GENERATION[0] += 1


def load(kind: str, type_name: str, *, where: str) -> type[Any]:
    """The plugin class for ``type_name``, or a ConfigError listing the known types."""
    if (kind, type_name) in _LOCAL:
        return _LOCAL[(kind, type_name)]
    eps = entry_points(kind)
    if type_name not in eps:
        known = ", ".join(names(kind)) or "(none installed)"
        raise ConfigError(f"{where}: unknown {kind} type '{type_name}'; known {kind} types: {known}")
    try:
        return eps[type_name].load()
    except Exception as exc:  # a broken third-party package should not crash with a traceback
        raise ConfigError(f"{where}: {kind} type '{type_name}' failed to load ({eps[type_name].value}): {exc}") from exc


def demo_names() -> list[str]:
    """Names of the installed demos (``automtl search --demo NAME``), from metadata only."""
    return sorted(entry_points("demo"))


def write_demo(name: str, folder: Any) -> Any:
    """Write demo ``name``'s data and experiment file into ``folder``; returns the experiment file."""
    from pathlib import Path

    return load("demo", name, where="--demo")(Path(folder))
