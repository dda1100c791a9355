"""Search-space files: parameter kinds, per-task expansion, conditions, validation.

A space is YAML with two mappings, ``parameters`` (global) and ``per_task``
(written once, expanded to ``head.<task>.units``, ``loss_weight.<task>``).
Each value is a fixed scalar or one of::

    {int: [low, high], step: 1, log: false}
    {float: [low, high], log: false, step: null}
    {choice: [a, b, c]}
    {fixed: value}

and may carry ``when: {other_param: value-or-list}``. Backends translate
the resulting :class:`SearchSpace` in one place each.

Which names exist and which values make sense is declared by whoever reads
the parameter (:mod:`automtl.core.params`, the axes in :mod:`automtl.core.registry`,
the plugins' ``parameters``); this module only enforces those declarations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Union

from automtl.config import read_yaml
from automtl.core import registry
from automtl.core.params import ParamSpec
from automtl.errors import ConfigError

KINDS = ("int", "float", "choice", "fixed")
#: The space built from the experiment's inputs and tasks (see :mod:`automtl.autospace`).
AUTO = "auto"

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "search_spaces"


@dataclass(frozen=True)
class Condition:
    parent: str
    values: tuple[Any, ...]

    def holds(self, chosen: dict[str, Any]) -> bool:
        return self.parent in chosen and chosen[self.parent] in self.values


@dataclass(frozen=True)
class IntParam:
    name: str
    low: int
    high: int
    step: int = 1
    log: bool = False
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class FloatParam:
    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class ChoiceParam:
    name: str
    values: tuple[Any, ...]
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class FixedParam:
    name: str
    value: Any
    when: tuple[Condition, ...] = ()


Param = Union[IntParam, FloatParam, ChoiceParam, FixedParam]


@dataclass
class SearchSpace:
    """Ordered parameters (parents before the parameters conditioned on them)."""

    source: str
    params: list[Param] = field(default_factory=list)
    description: str = ""
    #: First trials to run, each a partial ``name -> value`` assignment (the rest is sampled):
    #: a sensible initial design, so a short search starts from known-good settings.
    start: list[dict[str, Any]] = field(default_factory=list)

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def active(self, param: Param, chosen: dict[str, Any]) -> bool:
        return all(c.holds(chosen) for c in param.when)

    def sample_with(self, pick: "Picker") -> dict[str, Any]:
        """Walk the space in order, asking ``pick`` for each active parameter."""
        chosen: dict[str, Any] = {}
        for p in self.params:
            if self.active(p, chosen):
                chosen[p.name] = p.value if isinstance(p, FixedParam) else pick(p)
        return chosen


class Picker:
    """Callable protocol: ``pick(param) -> value`` (a backend's suggestion)."""

    def __call__(self, param: Param) -> Any:  # pragma: no cover - protocol only
        raise NotImplementedError


def resolve_space_path(name: str, base_dir: Path) -> Path:
    """A space is a path (relative to the experiment file) or a built-in name."""
    candidate = Path(name).expanduser()
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    if candidate.exists() or name.endswith((".yaml", ".yml")) or "/" in name:
        return candidate
    return BUILTIN_DIR / f"{name}.yaml"


def builtin_spaces() -> list[Path]:
    return sorted(BUILTIN_DIR.glob("*.yaml"))


Known = Union[Iterable[str], Mapping[str, Union[Iterable[Any], ParamSpec, None]]]


def plugin_parameters(plugins: Iterable[Any]) -> dict[str, ParamSpec]:
    """Extra parameters declared by plugins, as specs.

    A plugin's ``parameters`` is a tuple of names, or a mapping of name to a
    :class:`~automtl.core.params.ParamSpec`, a tuple of allowed values, or ``None``
    (any value).
    """
    known: dict[str, ParamSpec] = {}
    for plugin in plugins:
        known.update(_as_table(getattr(plugin, "parameters", ())))
    return known


def _as_table(names: Known) -> dict[str, ParamSpec]:
    if isinstance(names, Mapping):
        table = {}
        for k, v in names.items():
            if isinstance(v, ParamSpec):
                table[str(k)] = v
            else:
                table[str(k)] = ParamSpec(str(k), choices=None if v is None else tuple(v))
        return table
    return {str(n): ParamSpec(str(n)) for n in names}


def load_space(path: Path, tasks: Iterable[str], extra_names: Known = ()) -> SearchSpace:
    """Read and validate a space file for these tasks; errors name the file and key."""
    raw = read_yaml(path, "search space file")
    return parse_space(raw, str(path), list(tasks), extra_names)


def parse_space(raw: Any, source: str, tasks: list[str], extra_names: Known = ()) -> SearchSpace:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with 'parameters' and/or 'per_task'")
    unknown = set(raw) - {"parameters", "per_task", "description", "start"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)}; expected parameters, per_task, "
                          "description, start")
    glob_raw = raw.get("parameters") or {}
    task_raw = raw.get("per_task") or {}
    for key, section in (("parameters", glob_raw), ("per_task", task_raw)):
        if not isinstance(section, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping of parameter name to definition")
    extra = _as_table(extra_names)
    glob_specs = {**extra, **registry.parameter_specs()}
    # a plugin parameter declared per_task may also be written under per_task (label_smoothing)
    task_specs = {**{k: v for k, v in extra.items() if v.per_task}, **registry.per_task_specs()}
    space = SearchSpace(source, description=str(raw.get("description", "")))
    per_task_names = set(task_raw)
    spec_of: dict[str, ParamSpec] = {}
    for name, spec in glob_raw.items():
        _check_name(source, "parameters", name, glob_specs)
        space.params.append(_parse_param(source, f"parameters.{name}", name, spec, per_task_names, None))
        spec_of[name] = glob_specs[name]
    for name, spec in task_raw.items():
        _check_name(source, "per_task", name, task_specs)
        for task in tasks:
            param = _parse_param(source, f"per_task.{name}", expand(name, task), spec, per_task_names, task)
            space.params.append(param)
            spec_of[param.name] = task_specs[name]
    _check_values(space, spec_of)
    _check_conditions(space)
    _check_exclusive(source, set(glob_raw) | set(task_raw))
    space.start = _parse_start(raw.get("start"), space, source, tasks, per_task_names)
    return space


def _check_exclusive(source: str, defined: set[str]) -> None:
    """At most one parameter of each group that a member declares as alternatives (e.g. weights or logits)."""
    for owner, group in registry.exclusive_groups():
        both = [n for n in group if n in defined]
        if len(both) > 1:
            raise ConfigError(f"{source}: {' and '.join(both)} are alternatives for the {owner}; "
                              f"define only one of them")


def _parse_start(raw: Any, space: SearchSpace, source: str, tasks: list[str], per_task: set[str]) -> list[dict[str, Any]]:
    """``start``: a list of partial assignments; per-task names expand to every task; each value
    must be one the parameter can take."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(point, dict) for point in raw):
        raise ConfigError(f"{source}: start: expected a list of mappings (parameter name -> value)")
    by_name = {p.name: p for p in space.params}
    points = []
    for i, point in enumerate(raw):
        values: dict[str, Any] = {}
        for name, value in point.items():
            names = [expand(name, t) for t in tasks] if name in per_task else [str(name)]
            for full in names:
                param = by_name.get(full)
                if param is None:
                    raise ConfigError(f"{source}: start[{i}].{name}: not a parameter of this space")
                why = _not_a_value(param, value)
                if why:
                    raise ConfigError(f"{source}: start[{i}].{name}: {why}")
                values[full] = value
        points.append(values)
    return points


def _not_a_value(p: Param, value: Any) -> str | None:
    if isinstance(p, ChoiceParam):
        return None if value in p.values else f"{value!r} is not one of {list(p.values)}"
    if isinstance(p, FixedParam):
        return None if value == p.value else f"{value!r} differs from the fixed value {p.value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected a number, got {value!r}"
    if isinstance(p, IntParam) and float(value) != int(value):
        return f"expected a whole number, got {value!r}"
    if not p.low <= value <= p.high:
        return f"{value!r} lies outside [{p.low}, {p.high}]"
    return None


def expand(name: str, task: str) -> str:
    head, _, tail = name.partition(".")
    return f"{head}.{task}.{tail}" if tail else f"{head}.{task}"


def _check_name(source: str, section: str, name: Any, known: dict[str, ParamSpec]) -> None:
    if not isinstance(name, str) or name not in known:
        kind = "global" if section == "parameters" else "per-task"
        raise ConfigError(f"{source}: {section}.{name}: unknown parameter; known {kind} parameters: "
                          f"{', '.join(sorted(known))}")


def _parse_param(source: str, key: str, name: str, spec: Any, per_task: set[str], task: str | None) -> Param:
    def fail(msg: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {msg}")

    if not isinstance(spec, dict):
        if isinstance(spec, (list, tuple)):
            raise fail("a list is ambiguous; write {choice: [...]} or {int: [low, high]}")
        return FixedParam(name, spec)
    spec = dict(spec)
    when = _parse_when(spec.pop("when", None), fail, per_task, task)
    kinds = [k for k in spec if k in KINDS]
    if len(kinds) != 1:
        others = [k for k in spec if k not in ("log", "step")]
        what = f"unknown parameter kind '{others[0]}'" if others and not kinds else "needs exactly one kind"
        raise fail(f"{what}; expected one of: {', '.join(KINDS)}")
    kind = kinds[0]
    allowed = {"int": {"int", "step", "log"}, "float": {"float", "step", "log"}, "choice": {"choice"}, "fixed": {"fixed"}}[kind]
    extra = set(spec) - allowed
    if extra:
        raise fail(f"unexpected key(s) {sorted(extra)} for a {kind} parameter")
    if kind == "fixed":
        return FixedParam(name, spec["fixed"], when)
    if kind == "choice":
        values = spec["choice"]
        if not isinstance(values, list) or not values:
            raise fail("choice needs a non-empty list of values")
        if any(not isinstance(v, (str, int, float, bool)) for v in values):
            raise fail("choice values must be strings, numbers or booleans")
        return ChoiceParam(name, tuple(values), when)
    bounds = spec[kind]
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise fail(f"{kind} needs [low, high]")
    log = bool(spec.get("log", False))
    try:
        low, high = (int(b) for b in bounds) if kind == "int" else (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise fail(f"{kind} bounds must be numbers, got {bounds}") from None
    if kind == "int" and any(float(b) != int(b) for b in bounds):
        raise fail(f"int bounds must be whole numbers, got {bounds}")
    if low > high or (kind == "float" and low == high):
        raise fail(f"empty range [{bounds[0]}, {bounds[1]}]: low must be below high")
    if log and low <= 0:
        raise fail("a log-scaled range needs low > 0")
    step = spec.get("step")
    if kind == "int":
        step = int(step or 1)
        if step < 1 or (log and step != 1):
            raise fail("int step must be >= 1 (and 1 when log: true)")
        return IntParam(name, low, high, step, log, when)
    if step is not None and (float(step) <= 0 or log):
        raise fail("float step must be > 0 and cannot be combined with log: true")
    return FloatParam(name, low, high, log, None if step is None else float(step), when)


def _parse_when(raw: Any, fail, per_task: set[str], task: str | None) -> tuple[Condition, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise fail("'when' must map a parameter name to a value or list of values")
    conds = []
    for parent, values in raw.items():
        vals = tuple(values) if isinstance(values, list) else (values,)
        if task is not None and parent in per_task:
            parent = expand(parent, task)
        conds.append(Condition(str(parent), vals))
    return tuple(conds)


def _check_conditions(space: SearchSpace) -> None:
    seen: dict[str, Param] = {}
    for p in space.params:
        for c in p.when:
            parent = seen.get(c.parent)
            if parent is None:
                raise ConfigError(
                    f"{space.source}: {p.name}: 'when' refers to '{c.parent}', which is not defined before it"
                )
            possible = _possible_values(parent)
            if possible is not None and not set(c.values) & set(possible):
                raise ConfigError(f"{space.source}: {p.name}: 'when' value(s) {list(c.values)} never occur for '{c.parent}' {list(possible)}")
        seen[p.name] = p


def _possible_values(p: Param) -> tuple[Any, ...] | None:
    if isinstance(p, ChoiceParam):
        return p.values
    if isinstance(p, FixedParam):
        return (p.value,)
    return None


def _check_values(space: SearchSpace, spec_of: dict[str, ParamSpec]) -> None:
    """Every value a parameter can take is one its declaration allows (a choice's values, both ends of a range)."""
    for p in space.params:
        spec = spec_of[p.name]
        if isinstance(p, (FloatParam, IntParam)):
            if isinstance(p, FloatParam) and spec.integer:
                raise ConfigError(f"{space.source}: {p.name}: takes whole numbers; write {{int: [low, high]}}")
            if spec.choices is not None:
                raise ConfigError(f"{space.source}: {p.name}: takes one of {list(spec.choices)}; "
                                  "write {choice: [...]} or a fixed value")
            if math.isinf(float(p.low)) or math.isinf(float(p.high)):
                raise ConfigError(f"{space.source}: {p.name}: bounds must be finite")
            candidates: tuple[Any, ...] = (p.low, p.high)
        else:
            candidates = _possible_values(p) or ()
        for value in candidates:
            problem = spec.problem(value)
            if problem is not None:
                raise ConfigError(f"{space.source}: {p.name}: {problem}")
