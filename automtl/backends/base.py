"""What every backend offers the search loop, and the plain records it returns."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol


class TrialPruned(Exception):
    """Raised by :meth:`TrialHandle.report` when the backend stops a poor trial early."""


class TrialHandle(Protocol):
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

    @property
    def ok(self) -> bool:
        return self.state == "complete" and self.score is not None and math.isfinite(self.score)


Objective = Callable[[TrialHandle], TrialOutcome]


class Backend(ABC):
    """An engine that proposes values from a :class:`~automtl.space.SearchSpace`."""

    name: str = ""
    algorithms: tuple[str, ...] = ()
    #: whether ``objective: pareto`` (one objective per task) is supported
    multi_objective: bool = False
    #: a distributed worker runs trials but leaves ``trials.csv`` and the export to the process holding the study
    is_worker: bool = False

    @abstractmethod
    def optimize(
        self,
        objective: Objective,
        n_trials: int,
        timeout: float | None,
        on_trial: Callable[[TrialRecord], None],
    ) -> None:
        """Run until the study holds ``n_trials`` finished trials (or time runs out)."""

    @abstractmethod
    def records(self) -> list[TrialRecord]:
        """All trials of the study, including those of earlier (resumed) runs."""

    def best(self) -> TrialRecord | None:
        done = [r for r in self.records() if r.ok]
        return max(done, key=lambda r: r.score) if done else None
