"""``space: auto``: a search space built from the experiment's input and task types.

The core contributes the trunk, head and training parameters; each input and
task plugin adds its fragment (:meth:`automtl.api.InputEncoder.auto_space`),
in the search-space file format, and may override core entries (an image
input narrows the trunk, a text input the batch sizes). Built-in plugins keep
their fragments in ``auto_space.yaml`` in their package folder, under
``input:`` or ``task:`` and then the type name, so that ``automtl spaces`` can say what ``auto`` picks without
importing any plugin (and so numpy or TensorFlow).
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any, Iterable

import yaml

from automtl.core import registry
from automtl.errors import ConfigError

FRAGMENT_FILE = "auto_space.yaml"


#: Batch sizes ``auto`` chooses from: the largest three that still give an epoch
#: at least ``MIN_STEPS`` steps (small data needs small batches to train at all).
BATCH_SIZES = (16, 32, 64, 128, 256, 512)
MIN_STEPS = 12


def batch_sizes(rows: int | None) -> list[int]:
    if rows is None:
        return [64, 128, 256]
    fitting = [b for b in BATCH_SIZES if b <= max(BATCH_SIZES[1], rows // MIN_STEPS)]
    return fitting[-3:]


def sharing_fragment() -> dict[str, Any]:
    """With several tasks, how much they share is searched (as in ``default.yaml``), among the schemes
    that declare an ``auto_space``: ``none`` (a tower per task) is one, so the search can fall back
    to what separate models get."""
    schemes = sorted(((name, cls) for name, cls in registry.members("sharing").items()
                      if getattr(cls, "auto_space", None) is not None), key=lambda nc: (nc[1].auto_rank, nc[0]))
    fragment: dict[str, Any] = {"sharing": {"choice": [name for name, _ in schemes]}}
    for name, cls in schemes:
        for key, value in cls.auto_space.items():
            fragment[key] = {**copy.deepcopy(value), "when": {"sharing": name}}
    return fragment


def core_fragment(tasks: int, rows: int | None = None) -> dict[str, Any]:
    """Trunk, heads and training: what every experiment searches (``rows``: training rows)."""
    parameters: dict[str, Any] = {
        "trunk.depth": {"int": [1, 3]},
        "trunk.units": {"int": [64, 512], "log": True},
        "norm": {"choice": ["none", "batch", "layer"]},
        "dropout": {"float": [0.0, 0.4]},
        "strategy": "joint",
        "learning_rate": {"float": [3.0e-4, 1.0e-2], "log": True},
        "lr_schedule": {"choice": ["constant", "cosine", "onecycle"]},
        "weight_decay": {"float": [1.0e-5, 1.0e-1], "log": True},
        "batch_size": {"choice": batch_sizes(rows)},
    }
    per_task: dict[str, Any] = {"head.depth": {"int": [0, 1]}, "head.units": {"int": [32, 128], "log": True}}
    if tasks > 1:
        parameters.update(sharing_fragment())
        per_task["loss_weight"] = {"float": [0.5, 2.0], "log": True}
    start = core_start(rows)
    if tasks > 1:
        start.update({"sharing": registry.AXES["sharing"].default, "loss_weight": 1.0})
    return {"parameters": parameters, "per_task": per_task, "start": [start]}


def core_start(rows: int | None = None) -> dict[str, Any]:
    """The first trial's core settings: a plain, well-regularised MLP of the kind the tabular
    deep-learning literature uses as its default (Kadra et al. 2021; Gorishniy et al. 2021):
    two 256-wide layers, dropout 0.1, AdamW with a cosine schedule."""
    sizes = batch_sizes(rows)
    return {"trunk.depth": 2, "trunk.units": 256, "norm": "none", "dropout": 0.1, "learning_rate": 1.0e-3,
            "lr_schedule": "cosine", "weight_decay": 1.0e-4, "batch_size": sizes[len(sizes) // 2],
            "head.depth": 1, "head.units": 64}


def plugin_dir(module: str) -> Path | None:
    """The folder of a plugin's top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module.split(".")[0])
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent if spec.origin else None


def read_fragment(folder: Path | None, kind: str, type_name: str) -> dict[str, Any]:
    """The entry ``kind: {type_name: ...}`` of ``folder/auto_space.yaml`` ({} when there is none)."""
    if folder is None or not (folder / FRAGMENT_FILE).exists():
        return {}
    path = folder / FRAGMENT_FILE
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from None
    entry = (data.get(kind) or {}).get(type_name) or {}
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: {kind}.{type_name}: expected a mapping with parameters / per_task / description")
    return entry


def merge(fragments: Iterable[tuple[str, dict[str, Any]]], tasks: int, rows: int | None = None) -> dict[str, Any]:
    """Core first, then each plugin's fragment in turn (a later entry replaces an earlier one)."""
    space = core_fragment(tasks, rows)
    notes = ["core: " + ("how much the tasks share (none, hard, branch, soft), " if tasks > 1 else "")
             + "trunk, heads, norm, dropout, learning rate and its schedule, weight decay, batch size"
             + (f" (for {rows} training rows)" if rows is not None else "")]
    for owner, fragment in fragments:
        if not fragment:
            continue
        unknown = set(fragment) - {"parameters", "per_task", "description", "start", "summary"}
        if unknown:
            raise ConfigError(f"auto space fragment of {owner}: unknown key(s) {sorted(unknown)}; "
                              "expected parameters, per_task, description, start, summary")
        summary = fragment.get("summary")
        if summary is not None and not (isinstance(summary, str) or (
                isinstance(summary, list) and all(isinstance(t, str) for t in summary))):
            raise ConfigError(f"auto space fragment of {owner}: summary: expected a template or a list of templates "
                              f"(how a trial's choices read in trial lines), got {summary!r}")
        for section in ("parameters", "per_task"):
            for key, value in (fragment.get(section) or {}).items():
                space[section].pop(key, None) if value is None else space[section].__setitem__(key, value)
        if fragment.get("start"):  # a plugin's start points vary each first trial so far
            space["start"] = [{**base, **point} for base in space["start"] for point in fragment["start"]]
        if fragment.get("description"):
            notes.append(f"{owner}: {' '.join(str(fragment['description']).split())}")
    known = set(space["parameters"]) | set(space["per_task"])
    # start values of parameters a fragment replaced or removed are dropped (the sampler fills them)
    space["start"] = [{k: v for k, v in point.items() if k in known and _fits(space, k, v)} for point in space["start"]]
    space["description"] = "auto: built from the experiment's inputs and tasks. " + " | ".join(notes)
    return {"description": space["description"], "parameters": space["parameters"], "per_task": space["per_task"],
            "start": space["start"]}


def _fits(space: dict[str, Any], name: str, value: Any) -> bool:
    spec = space["parameters"].get(name, space["per_task"].get(name))
    if not isinstance(spec, dict):
        return spec == value
    if "choice" in spec:
        return value in spec["choice"]
    for kind in ("int", "float"):
        if kind in spec:
            low, high = spec[kind]
            return isinstance(value, (int, float)) and low <= value <= high
    return True


def build_auto_space(encoders: Iterable[Any], tasks: Iterable[Any], rows: int | None = None) -> dict[str, Any]:
    """The raw ``auto`` space (search-space file format) for these plugins and ``rows`` training rows."""
    tasks = list(tasks)
    fragments = [(f"{p.kind} '{p.name}' ({getattr(p, 'type_name', type(p).__name__)})", p.auto_space())
                 for p in [*encoders, *tasks]]
    return merge(fragments, len(tasks), rows)


def type_entries() -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, type, its ``auto_space.yaml`` entry) for every installed input and task type that has one,
    read without importing the plugins (``automtl spaces`` and trial lines stay light)."""
    from automtl.core.plugins import entry_points

    rows = []
    for kind in ("input", "task"):
        for name, ep in sorted(entry_points(kind).items()):
            entry = read_fragment(plugin_dir(ep.value.split(":")[0]), kind, name)
            if entry:
                rows.append((kind, name, entry))
    return rows


def describe_types() -> list[tuple[str, str, str]]:
    """(kind, type, what ``auto`` adds for it) for every installed input and task type."""
    return [(kind, name, " ".join(str(entry.get("description", "")).split())) for kind, name, entry in type_entries()]
