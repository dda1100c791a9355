"""DB-MTL: dual balancing (Lin, Ye, Xu, Shi and Zhang, 2023).

Loss-scale balancing: every task trains on its log loss, ``log(L_i + eps)``.
Gradient-magnitude balancing: each task's gradient on the shared variables
is smoothed by an exponential moving average ``m_i = beta_t m_i + (1 -
beta_t) g_i`` (``beta_t = beta / t^sigma``), every ``m_i`` is rescaled to
the largest norm among them, and the shared update is their sum, so no task
dominates the shared layers by the size of its gradient. The heads follow
their own log losses.

The recorded effective weight of task ``i`` is ``alpha_i / L_i`` (its
rescaling times the log's ``1 / L_i``), exact when ``beta`` is 0.
"""

from __future__ import annotations

from typing import Any, Sequence

from automtl.core.params import ParamSpec
from automtl.core.trial_params import TrialParams
from automtl.lazy import tf
from automtl.training.weighting.base import EPS, Weighting

LOG_EPS = 1e-8


class DualBalancing(Weighting):
    parameters = (
        ParamSpec("dbmtl_beta", 0.9, low=0, high=1, high_open=True,
                  doc="moving-average factor of the task gradients (0: this step's gradients only)"),
        ParamSpec("dbmtl_beta_sigma", 0.0, low=0, doc="decay of the factor over steps: beta / step ** sigma"),
    )
    per_task_gradients = True

    def __init__(self, tasks: Sequence[str], params: TrialParams) -> None:
        super().__init__(tasks, params)
        self.beta = float(self.value(params, "dbmtl_beta"))
        self.sigma = float(self.value(params, "dbmtl_beta_sigma"))
        self.steps = tf.Variable(0.0, trainable=False, name="dbmtl_steps")
        self._losses = tf.Variable(tf.zeros([self.T]), trainable=False, name="dbmtl_losses")
        self.buffer: Any = None

    def setup_gradients(self, dim: int, rng: Any) -> None:
        self.buffer = tf.Variable(tf.zeros([self.T, dim]), trainable=False, name="dbmtl_gradient_average")

    def task_objectives(self, losses):
        self._losses.assign(tf.stop_gradient(losses))
        return tf.math.log(losses + LOG_EPS)

    def combine(self, losses):
        return tf.reduce_sum(tf.math.log(losses + LOG_EPS))

    def combine_gradients(self, grads, gram):
        step = self.steps.assign_add(1.0)
        beta = self.beta / tf.pow(step, self.sigma)
        average = self.buffer.assign(grads + beta * (self.buffer - grads))
        norms = tf.norm(average, axis=1)
        alpha = tf.reduce_max(norms) / (norms + EPS)
        losses = self._losses
        self.note_weights(alpha / (losses + LOG_EPS), losses > 0)
        return tf.linalg.matvec(average, alpha, transpose_a=True)
