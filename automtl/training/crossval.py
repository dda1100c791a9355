"""Cross-validated trials (``data.folds``): K models trained in step, scored by the mean over the folds.

Every fold trains one epoch, then the per-task metrics and scores of that
epoch are averaged over the folds and reported as the trial's epoch, so the
backend prunes on the mean (one lucky fold prunes nothing and saves no
trial). Early stopping and the best epoch also follow the mean; the fold
models are not kept: the exported model is retrained on every training row
for the best epoch count (:func:`automtl.training.runner.refit`). The folds'
validation outputs of the best epoch are kept, concatenated in fold order:
every training row's out-of-fold prediction, which ensemble selection uses.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, Sequence

import numpy as np

from automtl.errors import TrialFailed
from automtl.objective import combine, mean_of
from automtl.training.cost import EpochPlan
from automtl.training.trainer import TIME_UP, EpochResult, FitResult, Trainer, check_started_in_time, time_is_up


def out_of_fold(trainers: Sequence[Trainer]) -> dict[str, np.ndarray]:
    """The folds' last validation outputs per task, concatenated in fold order; empty when the folds'
    outputs differ in shape (e.g. a class missing from one fold's training rows)."""
    preds = [tr.last_pred for tr in trainers]
    try:
        return {t: np.concatenate([np.asarray(p[t]) for p in preds]) for t in preds[0]}
    except (ValueError, KeyError):
        return {}


def fit_folds(trainers: Sequence[Trainer], importance: Mapping[str, float], epochs: int, patience: int | None = None,
              report: Callable[[EpochResult], None] | None = None, deadline: float | None = None,
              seconds: float | None = None) -> FitResult:
    """Train the folds' trainers in step; the result holds the mean metrics of the best mean epoch.
    ``seconds``: the trial's share of a time budget, which plans its epochs (as :meth:`Trainer.fit`)."""
    plan = EpochPlan(epochs, seconds)
    best: FitResult | None = None
    history: list[dict[str, float]] = []
    since_best, stopped = 0, ""
    check_started_in_time(deadline)
    tasks = [t.name for t in trainers[0].tasks]
    epoch = 0
    while epoch < plan.planned:
        epoch += 1
        started = time.perf_counter()
        results = [tr.train_epoch(epoch, plan.planned) for tr in trainers]
        plan.done(time.perf_counter() - started)
        metrics = {t: mean_of([r.metrics[t] for r, _ in results]) for t in tasks}
        scores = mean_of([r.scores for r, _ in results])
        objective = combine(scores, importance)
        losses = mean_of([r.losses for r, _ in results])
        row: dict[str, float] = {"epoch": epoch, "objective": objective}
        row.update({f"loss.{t}": v for t, v in losses.items()})
        row.update({f"{t}.{k}": v for t, ms in metrics.items() for k, v in ms.items()})
        row.update({f"fold{k + 1}.objective": r.objective for k, (r, _) in enumerate(results)})
        history.append(row)
        if best is None or (np.isfinite(objective) and not objective <= best.objective):
            best = FitResult(objective, metrics, scores, epoch, valid_pred=out_of_fold(trainers))
            since_best = 0
        else:
            since_best += 1
        if report is not None:
            report(EpochResult(epoch, losses, metrics, scores, objective))
        if patience is not None and since_best >= patience:
            break
        if epoch < plan.planned and time_is_up(deadline):
            stopped = f"{TIME_UP} after epoch {epoch}"
            break
    stopped = stopped or plan.note
    assert best is not None
    if not np.isfinite(best.objective):
        raise TrialFailed("the mean validation objective over the folds is not finite")
    best.history = history
    best.stopped = stopped
    best.planned = plan.planned
    return best
