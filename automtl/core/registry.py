"""The extension axes: sharing schemes, loss weightings, training strategies, search backends.

Each member of an axis is one file that declares its name (its entry point's
name), its parameters (:class:`~automtl.core.params.ParamSpec`: defaults and
allowed values) and what it can do, plus one registration in an entry-point
group, exactly like task and input plugins; built-in members register in
automtl's own ``pyproject.toml``. Space validation, the trainer, the Keras
Tuner translation, the report and the dashboard read these declarations;
no second list of names exists.

Declarations are light to import (TensorFlow loads when a member is used), so
that every file a user wrote is checked before TensorFlow starts.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

from automtl.core import plugins
from automtl.core.params import CORE, ParamSpec
from automtl.errors import ConfigError


@dataclass(frozen=True)
class Axis:
    """One extension axis: its entry-point kind, the space parameter that picks a member, the default."""

    kind: str
    #: the search-space parameter that picks a member (None: chosen in the experiment file, as a backend)
    selector: str | None
    default: str
    #: what a member is called in messages
    noun: str
    #: the whole axis only matters with two or more tasks (single-task baselines leave it out)
    multi_task: bool = False


AXES: dict[str, Axis] = {
    "sharing": Axis("sharing", "sharing", "hard", "sharing scheme"),
    "strategy": Axis("strategy", "strategy", "joint", "training strategy"),
    "weighting": Axis("weighting", "weighting", "static", "weighting method", multi_task=True),
    "backend": Axis("backend", None, "optuna", "search backend"),
    #: export formats beside the SavedModel (which every export holds): none by default
    "format": Axis("format", None, "", "export format"),
    #: how `automtl predict` writes a model's outputs: one column per output by default
    "prediction": Axis("prediction", None, "table", "prediction format"),
}


def names(kind: str) -> list[str]:
    """The members of an axis: installed (package metadata: nothing is imported) or
    :func:`~automtl.core.plugins.registered` in this process."""
    return plugins.names(kind)


def member(kind: str, name: str, where: str = "") -> Any:
    """The member ``name`` of axis ``kind`` (its class or declaration), or a clear ConfigError."""
    axis = AXES[kind]
    known = names(kind)
    if name not in known:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}unknown {axis.noun} '{name}'; known: {', '.join(known) or '(none installed)'}")
    return plugins.load(kind, name, where=where or axis.noun)


def members(kind: str) -> dict[str, Any]:
    """Every member of an axis, loaded (their modules are light by contract)."""
    return _members(kind, plugins.generation())


@functools.lru_cache(maxsize=None)
def _members(kind: str, generation: int) -> dict[str, Any]:
    return {name: member(kind, name) for name in names(kind)}


def _specs() -> tuple[dict[str, ParamSpec], dict[str, ParamSpec]]:
    return _specs_of(plugins.generation())


@functools.lru_cache(maxsize=None)
def _specs_of(generation: int) -> tuple[dict[str, ParamSpec], dict[str, ParamSpec]]:
    glob: dict[str, ParamSpec] = {s.name: s for s in CORE if not s.per_task}
    per_task: dict[str, ParamSpec] = {s.name: s for s in CORE if s.per_task}
    for axis in AXES.values():
        if axis.selector is None:
            continue
        found = members(axis.kind)
        glob[axis.selector] = ParamSpec(axis.selector, axis.default, choices=tuple(found), doc=f"the {axis.noun}",
                                        multi_task=axis.multi_task)
        for cls in found.values():
            for spec in getattr(cls, "parameters", ()):
                if axis.multi_task:
                    spec = dataclasses.replace(spec, multi_task=True)
                (per_task if spec.per_task else glob).setdefault(spec.name, spec)
    return glob, per_task


def parameter_specs() -> dict[str, ParamSpec]:
    """Every global parameter the core and the installed axis members declare, by name.

    Each axis with a selector contributes the selector itself (a choice among
    its members) and its members' own parameters. A name declared twice keeps
    its first declaration (members of one family may share one, as ``experts``).
    """
    return _specs()[0]


def per_task_specs() -> dict[str, ParamSpec]:
    """The per-task parameters (written once under ``per_task``, expanded to ``head.<task>.units``)."""
    return _specs()[1]


def exclusive_groups() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``(member, names)`` for each group of parameters a member declares as alternatives (``exclusive``)."""
    return _exclusive_groups(plugins.generation())


@functools.lru_cache(maxsize=None)
def _exclusive_groups(generation: int) -> tuple[tuple[str, tuple[str, ...]], ...]:
    found = []
    for axis in AXES.values():
        if axis.selector is None:
            continue
        for name, cls in members(axis.kind).items():
            for group in getattr(cls, "exclusive", ()):
                found.append((f"{axis.noun} '{name}'", tuple(group)))
    return tuple(found)


def refresh() -> None:
    """Forget loaded declarations (after packages were installed in this process, e.g. in tests)."""
    plugins.refresh()
    _members.cache_clear()
    _specs_of.cache_clear()
    _exclusive_groups.cache_clear()
