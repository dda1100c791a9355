"""Static weighting: the searched per-task weights, unchanged during training.

Weights come either from plain per-task values (``loss_weight.<task>``) or
from per-task logits on the simplex (``loss_logit.<task>``): ``T * softmax``
of the logits, so they always sum to the number of tasks. On the simplex a
search cannot trade a smaller overall loss scale against the learning rate,
and only the tasks' relative weights are searched.
"""

from __future__ import annotations

import numpy as np

from automtl.core.params import ParamSpec, positive
from automtl.core.trial_params import TrialParams
from automtl.training.weighting.base import Weighting


class StaticWeights(Weighting):
    """A weighted sum with the trial's ``loss_weight.<task>`` values or ``T * softmax(loss_logit)``."""

    parameters = (
        positive("loss_weight", 1.0, "the task's weight in the summed loss", per_task=True),
        ParamSpec("loss_logit", 0.0, low=-30, high=30, per_task=True,
                  doc="the task's logit; weights are T * softmax(logits), summing to the number of tasks"),
    )
    #: ``loss_weight`` and ``loss_logit`` are two ways to give the same weights: a space searches one of them.
    exclusive = (("loss_weight", "loss_logit"),)

    def initial_weights(self, params: TrialParams) -> list[float]:
        if any(f"loss_logit.{t}" in params.values for t in self.tasks) or "loss_logit" in params.values:
            return simplex_weights([float(params.for_task("loss_logit", t)) for t in self.tasks]).tolist()
        return [params.loss_weight(t) for t in self.tasks]


def simplex_weights(logits: list[float]) -> np.ndarray:
    """``T * softmax(logits)``: positive weights that sum to the number of tasks."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max())
    return len(z) * e / e.sum()
