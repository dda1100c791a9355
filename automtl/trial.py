"""A trial as every part sees it: its handle, its outcome, its record, and where its files live.

This is the neutral ground between the parts (Keras Tuner's split between
Oracle and Tuner): backends propose values and record results, the trial
runner trains one set of values, outputs write tables and exports. Each of
them imports this module, and none of them imports another for these types.
It needs no TensorFlow, Optuna or Keras Tuner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol


class TrialPruned(Exception):
    """Raised by :meth:`TrialHandle.report` when the backend stops a poor trial early."""


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

    @property
    def ok(self) -> bool:
        return self.state == "complete" and self.score is not None and math.isfinite(self.score)


#: The trial runner as a backend calls it.
Objective = Callable[[TrialHandle], TrialOutcome]


def trial_dir(run_dir: Path, number: int) -> Path:
    """Where trial ``number`` of a run keeps its model and curves: ``trials/00015/``."""
    return Path(run_dir) / "trials" / f"{number:05d}"
