"""GradNorm (Chen et al., 2018): balance the tasks' gradient norms on the last shared layer.

With ``G_i = w_i ||grad L_i||`` on the last shared layer, ``r_i`` the task's
inverse training rate ``(L_i / L_i(0)) / mean_j(L_j / L_j(0))`` and the target
``mean(G) * r_i ** alpha`` held constant, the weights follow the gradient of
``sum_i |G_i - target_i|`` and are renormalised to sum to the number of tasks.
"""

from __future__ import annotations

from typing import Sequence

from automtl.core.params import positive
from automtl.core.trial_params import TrialParams
from automtl.lazy import tf
from automtl.training.weighting.base import Weighting

#: Step size of the weights' own update (the paper's weights learn with the model's optimizer).
WEIGHT_LR = 0.025


class GradNorm(Weighting):
    parameters = (positive("gradnorm_alpha", 1.5, "strength of the pull towards equal training rates"),)

    def __init__(self, tasks: Sequence[str], params: TrialParams) -> None:
        super().__init__(tasks, params)
        self.alpha = float(self.value(params, "gradnorm_alpha"))
        self.weight_lr = WEIGHT_LR
        self.initial = tf.Variable(tf.zeros([self.T]), trainable=False, name="gradnorm_initial_losses")

    def wants_gradient_norms(self) -> bool:
        return True

    def after_step(self, losses, norms) -> None:
        """One GradNorm update of the weights from this step's losses and raw gradient norms."""
        losses = tf.stop_gradient(losses)
        self.initial.assign(tf.where(self.initial > 0, self.initial, tf.maximum(losses, 1e-8)))
        ratio = losses / self.initial
        rate = ratio / tf.reduce_mean(ratio)
        g = self.weights * norms
        target = tf.reduce_mean(g) * tf.pow(rate, self.alpha)
        grad_w = tf.sign(g - target) * norms  # d/dw_i of |w_i n_i - target_i|
        w = tf.maximum(self.weights - self.weight_lr * grad_w, 1e-3)
        self.weights.assign(w * self.T / tf.reduce_sum(w))
