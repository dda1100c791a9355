"""Parameters: what a searchable parameter may be (:class:`ParamSpec`), the core ones, and one trial's values.

A parameter is declared once, by whoever reads it: the core parameters here,
each sharing scheme, weighting method and strategy in its own file (see
:mod:`automtl.core.registry`), each plugin through its ``parameters``. Space
validation, defaults and the readers all use that one declaration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Protocol


class HasValues(Protocol):
    """What :meth:`Declared.value` reads of a trial's parameters (:class:`automtl.core.trial_params.TrialParams`
    has it); a protocol, so that declarations never import the trial record that is built from them."""

    values: Mapping[str, Any]


@dataclass(frozen=True)
class ParamSpec:
    """One searchable parameter: its default and the values that make sense.

    ``choices`` lists the allowed values of a categorical parameter; numeric
    ones may have bounds (``low``/``high``, inclusive unless ``*_open``) and be
    whole numbers (``integer``). ``per_task`` parameters are written once under
    a space's ``per_task`` and expanded per task (``head.<task>.units``).
    """

    name: str
    default: Any = None
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    per_task: bool = False
    doc: str = ""
    #: only matters with two or more tasks (how tasks are weighted or picked): single-task
    #: baselines leave it out and take its default
    multi_task: bool = False

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed, or None when it is."""
        if self.choices is not None:
            return None if value in self.choices else f"unknown value {value!r}; expected one of {list(self.choices)}"
        if self.low is None and self.high is None and not self.integer:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {value!r}"
        if not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
        if self.integer and float(value) != int(value):
            return f"expected a whole number, got {value!r}"
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return f"{value!r} is out of range; {self.describe_range()}"
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return f"{value!r} is out of range; {self.describe_range()}"
        return None

    def describe_range(self) -> str:
        """The allowed values in words, e.g. ``values must be > 0`` or ``values must lie in [0, 1)``."""
        if self.choices is not None:
            return f"expected one of {list(self.choices)}"
        kind = "whole numbers" if self.integer else "values"
        if self.low is not None and self.high is not None:
            lb, rb = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{kind} must lie in {lb}{_num(self.low)}, {_num(self.high)}{rb}"
        if self.low is not None:
            return f"{kind} must be {'>' if self.low_open else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{kind} must be {'<' if self.high_open else '<='} {_num(self.high)}"
        return kind


class Declared:
    """Base of an axis member (sharing scheme, strategy, weighting): its own declared parameters."""

    #: the parameters this member reads; space validation and defaults come from here
    parameters: ClassVar[tuple[ParamSpec, ...]] = ()
    #: groups of its parameters that are alternatives: a search space may define at most one of each group
    exclusive: ClassVar[tuple[tuple[str, ...], ...]] = ()

    @classmethod
    def value(cls, params: HasValues, name: str) -> Any:
        """This trial's value of one of the member's parameters (its declared default when unsearched)."""
        if name in params.values:
            return params.values[name]
        for spec in cls.parameters:
            if spec.name == name:
                return spec.default
        raise KeyError(f"{cls.__name__} declares no parameter '{name}'")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def positive_int(name: str, default: Any, doc: str = "", per_task: bool = False) -> ParamSpec:
    return ParamSpec(name, default, low=1, integer=True, doc=doc, per_task=per_task)


def positive(name: str, default: Any, doc: str = "", per_task: bool = False, multi_task: bool = False) -> ParamSpec:
    return ParamSpec(name, default, low=0, low_open=True, doc=doc, per_task=per_task, multi_task=multi_task)


def choice(name: str, values: tuple[Any, ...], default: Any, doc: str = "", multi_task: bool = False) -> ParamSpec:
    return ParamSpec(name, default, choices=tuple(values), doc=doc, multi_task=multi_task)


#: The parameters every model has (the sharing scheme, strategy and weighting add their own).
CORE: tuple[ParamSpec, ...] = (
    ParamSpec("trunk.depth", 2, low=0, integer=True, doc="dense layers in the trunk"),
    positive_int("trunk.units", 128, "width of the trunk's dense layers"),
    choice("trunk.kind", ("mlp", "tabm"), "mlp", "the dense trunk: a plain MLP, or TabM (k members sharing its "
           "dense weights through per-member adapters, their predictions averaged; Gorishniy et al., 2025)"),
    ParamSpec("tabm.k", 16, low=2, high=64, integer=True, doc="members of a TabM trunk (trunk.kind: tabm)"),
    ParamSpec("dropout", 0.1, low=0, high=1, high_open=True, doc="dropout rate of trunk and heads"),
    ParamSpec("l2", 0.0, low=0, doc="L2 penalty on kernels"),
    positive("learning_rate", 1e-3, "Adam's step size"),
    positive_int("batch_size", 64, "examples per step"),
    positive_int("head.units", 64, "width of a task head's hidden layers", per_task=True),
    ParamSpec("head.depth", 1, low=0, integer=True, per_task=True, doc="hidden layers of a task head"),
    choice("norm", ("none", "batch", "layer"), "none", "normalisation in every dense block (trunk, experts, heads)"),
    choice("lr_schedule", ("constant", "cosine", "onecycle"), "constant",
           "learning-rate schedule over the epochs (automtl.training.schedules)"),
    ParamSpec("weight_decay", 0.0, low=0, high=1, doc="AdamW's decoupled weight decay on kernels and embeddings"),
)
