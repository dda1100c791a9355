"""The chance-level reference of a run: each task's trivial predictor scored on the validation rows.

A dominant class makes accuracy look good for a model that learned nothing
(always answering the majority class scores its share); the reference puts
that figure beside every trial. Each task says what its trivial predictor is
(:meth:`automtl.api.Task.chance_output`: class frequencies, the training
mean), learned from the training rows only, as the models are.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from automtl.plugin_base import Task
from automtl.data.prepare import Arrays, Prepared
from automtl.objective import mean_of


def chance_reference(prepared: Prepared) -> dict[str, dict[str, Any]]:
    """Per task that has a trivial predictor: ``{"label", "metric", "value", "metrics", "score"}`` on the
    validation rows (cross-validated: the mean over the folds, each fold's predictor learned on its own
    training rows)."""
    pairs: list[tuple[Sequence[Task], Arrays]] = (
        [(f.tasks, f.valid) for f in prepared.folds] if prepared.folds
        else [(prepared.tasks, prepared.valid)] if prepared.valid is not None else [])
    out: dict[str, dict[str, Any]] = {}
    for i, task in enumerate(prepared.tasks):
        per_fold, scores = [], []
        for tasks, valid in pairs:
            t = tasks[i]
            raw = t.chance_output()
            if raw is None:
                break
            metrics = evaluate_constant(t, valid, np.asarray(raw, np.float64))
            per_fold.append(metrics)
            scores.append(float(t.score(metrics)))
        if not per_fold or len(per_fold) != len(pairs):
            continue
        metrics = mean_of(per_fold)
        out[task.name] = {
            "label": task.chance_label,
            "metric": task.primary_metric,
            "value": metrics.get(task.primary_metric),
            "metrics": {k: v for k, v in metrics.items() if k != "labelled"},
            "score": float(np.mean(scores)),
        }
    return out


def evaluate_constant(task: Task, valid: Arrays, raw: np.ndarray) -> dict[str, float]:
    """``task``'s metrics of one raw output repeated on every validation row."""
    y, mask = valid.y[task.name], valid.mask[task.name]
    pred = np.broadcast_to(raw, (len(mask), *raw.shape)).copy()
    return task.evaluate(y, mask, pred)
