"""Max-loss weighting: minimise the largest task loss (a minimax objective)."""

from __future__ import annotations

from automtl.lazy import tf
from automtl.training.weighting.base import Weighting


class MaxLoss(Weighting):
    """Only the currently worst task's loss gets a gradient each step."""

    def combine(self, losses):
        worst = tf.argmax(losses)
        self.weights.assign(tf.one_hot(worst, self.T))
        return tf.reduce_max(losses)
