"""A search's time budget (``--timeout``): one deadline for the whole command, planned from measured costs.

The deadline covers the trials and what follows them (single-task baselines,
ensemble selection, the refit of the best trial, the exports). The trials get
what is left once a *reserve* for those phases is kept back, and the reserve
is re-sized after every finished trial from what the trials measured
(:attr:`automtl.core.trial.TrialRecord.cost`): the refit costs about the best
trial's epochs on more rows, a baseline about one trial per task, an export
about :data:`EXPORT_SECONDS` on an idle machine (:func:`export_prior`). Until a trial has finished,
:data:`INITIAL_SHARE` of the budget is kept. After the trials each phase runs
only while its estimate fits in what is left (the exports come first in
importance, the baselines last), so a timed run ends near its deadline with
``best/`` and, from two usable trials on, ``ensemble/``.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Sequence

from automtl.core.trial import TrialRecord, top_fidelity
from automtl.training.cost import CostModel, fit

#: Seconds one SavedModel export takes (trace, save, reload and compare): about 2 s for the digits
#: demo's MLP on a 2-core CPU, more for image and text models; an ensemble's export counts twice.
EXPORT_SECONDS = 5.0


def export_prior() -> float:
    """What an export should take here before one has been measured: :data:`EXPORT_SECONDS` times
    the machine's load per core, when it is above 1.

    Trials measure their own cost, but nothing exports before the trials end. Beside other
    jobs (load 8-10 on 2 cores) ``best/``'s export took 27 s, not 5, and a reserve planned on
    5 s left no time for ``ensemble/`` in any of six 5-minute runs.
    """
    try:
        per_core = os.getloadavg()[0] / max(1, os.cpu_count() or 1)
    except OSError:  # no load average on this platform
        per_core = 1.0
    return EXPORT_SECONDS * max(1.0, per_core)
#: The share of the budget kept for what follows the trials until a trial has measured the costs.
INITIAL_SHARE = 0.15
#: Never more than this share is kept back from the trials: past it the baselines are the first to go.
MAX_SHARE = 0.35
#: The share of the budget a step after the trials may run over its estimate (the target is to end
#: within 10 % of the budget; the last trial may already have run past its share).
SLACK_SHARE = 0.03
#: Trials whose typical duration predicts how many more fit.
RECENT_TRIALS = 10
#: Trials a time budget plans for at least (fewer when the user asked for fewer): until this many
#: finished, each trial's share is the time left over the trials still to come, and its epochs are
#: planned to fit that share (:class:`~automtl.training.cost.EpochPlan`).
PLANNED_TRIALS = 10


@dataclass
class Budget:
    """The deadline of one command and the share of it the trials get."""

    #: when the whole command should end (``time.time()`` seconds); None without a time budget
    deadline: float | None
    #: the budget in seconds (``--timeout``); None for a worker, which keeps no reserve of its own
    seconds: float | None
    tasks: int
    max_epochs: int
    #: best/ is refit on the training and validation rows (and the ratio of those rows to the training rows)
    refit: bool = False
    refit_rows: float = 1.0
    #: single-task baselines trained with the best configuration (``search.baselines: auto``)
    baselines: bool = False
    #: an ensemble is selected and exported
    ensemble: bool = True
    #: cross-validation folds (0: a hold-out split): every exported model is then trained on every row
    folds: int = 0
    #: what the export of best/ took here, once it ran (the ensemble's export is planned from it)
    export_seconds: float | None = None
    #: the trials the budget plans for at least (:data:`PLANNED_TRIALS`, or the user's fewer)
    planned_trials: int = PLANNED_TRIALS

    # -- what follows the trials ------------------------------------------------------------
    def end_costs(self, records: Sequence[TrialRecord]) -> dict[str, float]:
        """Estimated seconds of each phase after the trials, from what the trials measured."""
        done = [r for r in records if r.ok]
        export = export_prior() if self.export_seconds is None else self.export_seconds
        costs = {"export": export}
        if not done:
            return costs
        best = max(top_fidelity(done), key=lambda r: r.score)  # the trial best/ will come from
        # what follows trains on every row: a multi-fidelity trial's time scales up by its rows
        train = float(best.cost.get("train_seconds") or best.duration_s or 0.0) / best.fidelity
        trained = int(best.cost.get("epochs") or best.best_epoch or 1)
        per_epoch = train / max(1, trained)
        epochs = best.best_epoch or trained
        # a model trained on every row: a hold-out refit sees the validation rows too; a cross-validated
        # trial's epoch trains k folds of (k-1)/k of the rows each, k-1 times the rows in all
        one_model = per_epoch * epochs * (self.refit_rows if self.refit else 1.0)
        if self.folds:
            one_model = per_epoch / max(1, self.folds - 1) * epochs
        if self.refit or self.folds:
            costs["refit"] = one_model
        if self.ensemble and len(done) >= 2:
            members = min(len(done), 5)
            costs["ensemble"] = export * 2 + (members * one_model if self.folds else 0.0)
        if self.baselines and self.tasks > 1:
            costs["baselines"] = self.tasks * train  # each task alone: about one trial's training
        return costs

    def reserve(self, records: Sequence[TrialRecord]) -> float:
        """Seconds kept back from the trials for what follows them."""
        if self.seconds is None:
            return 0.0
        if not any(r.ok for r in records):
            return max(EXPORT_SECONDS, INITIAL_SHARE * self.seconds)
        costs = self.end_costs(records)
        needed = sum(costs.values())
        if needed > MAX_SHARE * self.seconds:  # the baselines are the first to go
            needed -= costs.get("baselines", 0.0)
        return min(needed, MAX_SHARE * self.seconds)

    # -- the trials -------------------------------------------------------------------------
    def trial_deadline(self, records: Sequence[TrialRecord]) -> float | None:
        """When trials must end (``time.time()`` seconds): a running trial stops at its next epoch after it."""
        return None if self.deadline is None else self.deadline - self.reserve(records)

    def trials_left(self, records: Sequence[TrialRecord]) -> float | None:
        """Seconds left for starting trials; 0 once even the cheapest trial so far would not fit."""
        end = self.trial_deadline(records)
        if end is None:
            return None
        left = end - time.time()
        cheapest = [float(r.cost["train_seconds"]) for r in records if r.ok and r.cost.get("train_seconds")]
        if cheapest and left < min(cheapest):
            return 0.0
        return left

    def allowance(self, records: Sequence[TrialRecord]) -> float | None:
        """The next trial's share of the time left for trials (None without a time budget of this process's own).

        Until :attr:`planned_trials` finished, the time left is shared among the trials still to come;
        after that a trial may take up to half of it, so that one more can still follow.
        """
        left = self.trials_left(records)
        if left is None or self.seconds is None:
            return None
        finished = sum(r.state in ("complete", "pruned") for r in records)
        return left / max(2, self.planned_trials - finished)

    def cost_model(self, records: Sequence[TrialRecord]) -> CostModel | None:
        """The cost model a new trial is checked against (None without a time budget or a measured trial)."""
        if self.deadline is None:
            return None
        return fit([r.cost for r in records if r.cost], self.max_epochs,
                   [int(r.cost.get("epochs", 0)) for r in records if r.ok and r.cost])

    def more_trials(self, records: Sequence[TrialRecord]) -> int | None:
        """About how many more trials fit, from the recent trials' durations (None when unknown)."""
        left = self.trials_left(records)
        took = [r.duration_s for r in records if r.duration_s and r.state in ("complete", "pruned")]
        if left is None or not took:
            return None
        return max(0, int(left // statistics.median(took[-RECENT_TRIALS:])))

    # -- after the trials -------------------------------------------------------------------
    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    def fits(self, phase: str, records: Sequence[TrialRecord], after: Sequence[str] = ()) -> tuple[bool, float]:
        """Whether ``phase`` fits in the time left (and :data:`SLACK_SHARE` of the budget) with the phases
        ``after`` it still to come; and its estimate."""
        left = self.left()
        costs = self.end_costs(records)
        cost = costs.get(phase, 0.0)
        if left is None:
            return True, cost
        slack = SLACK_SHARE * self.seconds if self.seconds else 0.0
        return cost + sum(costs.get(p, 0.0) for p in after) <= left + slack, cost

    def phase_deadline(self, records: Sequence[TrialRecord], after: Sequence[str]) -> float | None:
        """The deadline of a phase that trains (the baselines) with the phases ``after`` it still to come."""
        if self.deadline is None:
            return None
        costs = self.end_costs(records)
        return self.deadline - sum(costs.get(p, 0.0) for p in after)

    def describe(self) -> str:
        """The start-up line's words for the budget."""
        if self.seconds is None or self.deadline is None:
            return ""
        return (f"time budget {self.seconds:g} s for the whole command; "
                f"{self.reserve([]):.0f} s of it kept for "
                + ", ".join(p for p, on in (("baselines", self.baselines and self.tasks > 1),
                                             ("ensemble", self.ensemble), ("refit", self.refit or bool(self.folds)),
                                             ("export", True)) if on)
                + " (re-sized from the measured trial times)")
