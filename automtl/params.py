"""One trial's parameter values, with the defaults that apply when a space omits one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

DEFAULTS: dict[str, Any] = {
    "trunk.depth": 2,
    "trunk.units": 128,
    "dropout": 0.1,
    "l2": 0.0,
    "learning_rate": 1e-3,
    "batch_size": 64,
    "strategy": "joint",
    "head.units": 64,
    "head.depth": 1,
    "loss_weight": 1.0,
    "task_prob": 1.0,
}


@dataclass(frozen=True)
class HeadParams:
    """What a task head is built from: its own size plus the shared regularisation."""

    units: int
    depth: int
    dropout: float
    l2: float


@dataclass(frozen=True)
class TrialParams:
    """Flat ``name -> value`` mapping of one trial, as the backend proposed it."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        if name in self.values:
            return self.values[name]
        return DEFAULTS.get(name, default) if default is None else default

    def for_task(self, key: str, task: str) -> Any:
        """A per-task value: ``head.units`` for task ``t`` is ``head.t.units``."""
        head, _, tail = key.partition(".")
        name = f"{head}.{task}.{tail}" if tail else f"{head}.{task}"
        if name in self.values:
            return self.values[name]
        return self.values[key] if key in self.values else DEFAULTS[key]

    @property
    def trunk_depth(self) -> int:
        return int(self.get("trunk.depth"))

    @property
    def trunk_units(self) -> int:
        return int(self.get("trunk.units"))

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

    def head(self, task: str) -> HeadParams:
        return HeadParams(
            units=int(self.for_task("head.units", task)),
            depth=int(self.for_task("head.depth", task)),
            dropout=self.dropout,
            l2=self.l2,
        )

    def loss_weight(self, task: str) -> float:
        return float(self.for_task("loss_weight", task))

    def task_learning_rate(self, task: str) -> float:
        """``learning_rate.<task>`` if searched, else the global learning rate."""
        return float(self.for_task("learning_rate", task))

    def task_prob(self, task: str) -> float:
        return float(self.for_task("task_prob", task))
