"""Static weighting: the searched per-task weights, unchanged during training."""

from __future__ import annotations

from automtl.params import positive
from automtl.trial import TrialParams
from automtl.training.weighting.base import Weighting


class StaticWeights(Weighting):
    """A weighted sum with the trial's ``loss_weight.<task>`` values."""

    parameters = (positive("loss_weight", 1.0, "the task's weight in the summed loss", per_task=True),)

    def initial_weights(self, params: TrialParams) -> list[float]:
        return [params.loss_weight(t) for t in self.tasks]
