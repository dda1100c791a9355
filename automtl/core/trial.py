"""A trial as every part sees it: its handle, its outcome, its record, and where its files live.

This is the neutral ground between the parts (Keras Tuner's split between
Oracle and Tuner): backends propose values and record results, the trial
runner trains one set of values, outputs write tables and exports. Each of
them imports this module, and none of them imports another for these types.
It needs no TensorFlow, Optuna or Keras Tuner. A trial's parameter values
(:class:`TrialParams`) live here too: every part reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence


class TrialPruned(Exception):
    """Raised by :meth:`TrialHandle.report` when the backend stops a poor trial early.

    ``cost``: what the trial's training cost until then (see :attr:`TrialRecord.cost`), which a
    time budget learns from as from a completed trial.
    """

    def __init__(self, message: str = "", cost: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.cost = cost or {}


class TrialHandle(Protocol):
    """What the trial runner gets from a backend for one trial."""

    number: int
    params: dict[str, Any]

    def report(self, epoch: int, value: float) -> None:
        """Send one epoch's objective; raises :class:`TrialPruned` to stop the trial."""


@dataclass
class TrialOutcome:
    """What the trial runner hands back for one finished trial."""

    score: float
    metrics: dict[str, float]
    scores: dict[str, float]
    best_epoch: int
    epochs: int
    device: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrialRecord:
    """One trial as stored by the backend; the rows of ``trials.csv``."""

    number: int
    state: str
    score: float | None
    params: dict[str, Any]
    metrics: dict[str, float]
    duration_s: float | None
    device: str = ""
    reason: str = ""
    best_epoch: int | None = None
    #: per-task higher-is-better scores (the objectives of a Pareto search)
    scores: dict[str, float] = field(default_factory=dict)
    #: on the Pareto front of a multi-objective search; None in single-objective runs
    pareto: bool | None = None
    #: what training cost (a time budget plans from it): ``train_seconds``, ``epoch_seconds``, ``epochs``
    #: trained, training ``rows`` and model ``weights``; empty for trials that never trained
    cost: dict[str, float] = field(default_factory=dict)
    #: the fraction of the training rows it trained on (multi-fidelity search; 1: all of them)
    fidelity: float = 1.0
    #: the trial whose configuration it runs again on more rows (a promotion), else None
    parent: int | None = None

    @property
    def ok(self) -> bool:
        return self.state == "complete" and self.score is not None and math.isfinite(self.score)


def same_fidelity(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6)


def top_fidelity(records: "Sequence[TrialRecord]") -> list[TrialRecord]:
    """The completed trials that rank: those of the highest fidelity any completed trial reached.

    Without multi-fidelity every trial has fidelity 1 and this is every completed
    trial. With it, a configuration seen on a ninth of the rows never outranks one
    trained on all of them; a search cut short before any trial saw all rows
    still exports the best of the highest rung it reached.
    """
    done = [r for r in records if r.ok]
    if not done:
        return []
    top = max(r.fidelity for r in done)
    return [r for r in done if same_fidelity(r.fidelity, top)]


#: The trial runner as a backend calls it.
Objective = Callable[[TrialHandle], TrialOutcome]


def trial_dir(run_dir: Path, number: int) -> Path:
    """Where trial ``number`` of a run keeps its model and curves: ``trials/00015/``."""
    return Path(run_dir) / "trials" / f"{number:05d}"


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
    from automtl.core import registry

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
