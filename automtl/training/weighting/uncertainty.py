"""Uncertainty weighting (Kendall, Gal and Cipolla, 2018).

Each task learns a log-variance ``s``; its loss enters as
``L / (2 exp(s)) + s / 2``, so a noisier task (larger irreducible loss)
learns a larger variance and gets a smaller weight ``1 / (2 exp(s))``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from automtl.core.trial_params import TrialParams
from automtl.lazy import tf
from automtl.training.weighting.base import Weighting


class UncertaintyWeights(Weighting):
    def __init__(self, tasks: Sequence[str], params: TrialParams) -> None:
        super().__init__(tasks, params)
        self.log_var = tf.Variable(tf.zeros([self.T]), trainable=True, name="uncertainty_log_var")

    @property
    def variables(self) -> list:
        return [self.log_var]

    def combine(self, losses):
        return tf.reduce_sum(losses * 0.5 * tf.exp(-self.log_var) + 0.5 * self.log_var)

    def effective_weights(self) -> np.ndarray:
        return 0.5 * np.exp(-self.log_var.numpy())
