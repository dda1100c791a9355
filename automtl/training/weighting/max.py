"""Max-loss weighting: minimise the largest task loss (a minimax objective)."""

from __future__ import annotations

from automtl.lazy import tf
from automtl.training.weighting.base import Weighting


class MaxLoss(Weighting):
    """Only the currently worst task's loss gets a gradient each step.

    Its effective weights per epoch are the share of steps each task was the worst.
    """

    def combine(self, losses):
        worst = tf.one_hot(tf.argmax(losses), self.T)
        self.weights.assign(worst)
        self.note_weights(worst)
        return tf.reduce_max(losses)
