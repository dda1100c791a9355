"""Scale-invariant loss: the sum of the log task losses.

``sum_i log L_i`` has the gradient ``sum_i grad L_i / L_i``: multiplying a
task's loss by any constant leaves the update unchanged, so a loss measured
in grams squared and a cross-entropy train on an equal footing without any
tuned weight (the "scale-invariant" baseline of Navon et al., 2022). The
effective weight of task ``i`` is ``1 / L_i``.
"""

from __future__ import annotations

from automtl.lazy import tf
from automtl.training.weighting.base import Weighting

#: Keeps the log finite when a loss reaches zero (a batch without labels for a task has loss 0 and no gradient).
LOG_EPS = 1e-8


class ScaleInvariant(Weighting):
    def combine(self, losses):
        labelled = losses > 0
        self.note_weights(1.0 / (losses + LOG_EPS), labelled)
        return tf.reduce_sum(tf.math.log(losses + LOG_EPS))
