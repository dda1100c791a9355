"""One trial's parameter values, and the declared default of each value the space leaves out.

Apart from :mod:`automtl.core.trial` because the defaults come from the
registry (every installed member declares its own), and the registry's
declarations must not import the trial record back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from automtl.core import registry


@dataclass(frozen=True)
class HeadParams:
    """What a task head is built from: its own size plus the shared regularisation."""

    units: int
    depth: int
    dropout: float
    l2: float
    #: normalisation in the head's dense layers: "none", "batch" or "layer"
    norm: str = "none"


def _defaults(per_task: bool = False) -> dict[str, Any]:
    specs = registry.per_task_specs() if per_task else registry.parameter_specs()
    return {name: spec.default for name, spec in specs.items()}


@dataclass(frozen=True)
class TrialParams:
    """Flat ``name -> value`` mapping of one trial, as the backend proposed it.

    A parameter the space leaves out takes the default its declaration gives.
    """

    values: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        if name in self.values:
            return self.values[name]
        if default is not None:
            return default
        return _defaults().get(name)

    def for_task(self, key: str, task: str) -> Any:
        """A per-task value: ``head.units`` for task ``t`` is ``head.t.units``."""
        head, _, tail = key.partition(".")
        name = f"{head}.{task}.{tail}" if tail else f"{head}.{task}"
        if name in self.values:
            return self.values[name]
        if key in self.values:
            return self.values[key]
        return _defaults(per_task=True).get(key, self.get(key))

    @property
    def trunk_depth(self) -> int:
        return int(self.get("trunk.depth"))

    @property
    def trunk_units(self) -> int:
        return int(self.get("trunk.units"))

    @property
    def tabm_members(self) -> int:
        """The members of a TabM trunk (``trunk.kind: tabm``), else 0: a plain MLP."""
        return int(self.get("tabm.k")) if self.get("trunk.kind") == "tabm" else 0

    @property
    def dropout(self) -> float:
        return float(self.get("dropout"))

    @property
    def l2(self) -> float:
        return float(self.get("l2"))

    @property
    def learning_rate(self) -> float:
        return float(self.get("learning_rate"))

    @property
    def batch_size(self) -> int:
        return int(self.get("batch_size"))

    @property
    def strategy(self) -> str:
        return str(self.get("strategy"))

    @property
    def norm(self) -> str:
        return str(self.get("norm"))

    @property
    def lr_schedule(self) -> str:
        return str(self.get("lr_schedule"))

    @property
    def weight_decay(self) -> float:
        return float(self.get("weight_decay"))

    def head(self, task: str) -> HeadParams:
        return HeadParams(
            units=int(self.for_task("head.units", task)),
            depth=int(self.for_task("head.depth", task)),
            dropout=self.dropout,
            l2=self.l2,
            norm=self.norm,
        )

    def loss_weight(self, task: str) -> float:
        return float(self.for_task("loss_weight", task))

    def task_learning_rate(self, task: str) -> float:
        """``learning_rate.<task>`` if searched, else the global learning rate."""
        return float(self.for_task("learning_rate", task) or self.learning_rate)

    def task_prob(self, task: str) -> float:
        return float(self.for_task("task_prob", task))
