"""A trial as every part sees it: its handle, its outcome, its record, and where its files live.

This is the neutral ground between the parts (Keras Tuner's split between
Oracle and Tuner): backends propose values and record results, the trial
runner trains one set of values, the run folder's readers and the export
write tables and models. Each of them imports this module, and none of them
imports another for these types. It needs no TensorFlow, Optuna or Keras
Tuner, and imports nothing of automtl. A trial's parameter values live beside
it, in :mod:`automtl.core.trial_params`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence


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
