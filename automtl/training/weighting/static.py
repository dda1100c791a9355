"""Static weighting: the searched per-task weights, unchanged during training."""

from __future__ import annotations

from automtl.training.weighting.base import Weighting


class StaticWeights(Weighting):
    """A weighted sum with the trial's ``loss_weight.<task>`` values."""
