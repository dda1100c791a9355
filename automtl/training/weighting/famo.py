"""FAMO: fast adaptive multitask optimisation (Liu, Liu, Jin, Stone and Liu, 2023).

Task weights ``z = softmax(xi)`` from per-task logits. Each step minimises
``sum_i z_i log L_i / c`` with ``c = sum_i z_i / L_i`` held fixed, i.e. moves
along ``sum_i (z_i / (c L_i)) grad L_i`` (one backward pass). After the step
the batch's losses are evaluated again, and ``delta_i = log L_i(before) -
log L_i(after)`` updates the logits: ``xi -= lr * Adam(J_softmax^T delta +
decay * xi)``, so a task whose log loss fell less gets more weight next
step, and all losses fall at a balanced rate. The weights are scaled by the
number of tasks so that, like static weights, they sum to ``T`` (to the
number of tasks with labels in the batch, when some have none).
"""

from __future__ import annotations

from typing import Sequence

from automtl.core.params import ParamSpec, positive
from automtl.core.trial_params import TrialParams
from automtl.lazy import tf
from automtl.training.weighting.base import Weighting

#: The paper's loss offset (its ``min_losses`` are 0): keeps the logs finite.
LOG_EPS = 1e-8


class FAMO(Weighting):
    parameters = (
        positive("famo_lr", 0.025, "step size of the task logits' Adam"),
        ParamSpec("famo_decay", 0.001, low=0, doc="weight decay of the task logits (pulls them to equal weights)"),
    )
    losses_after_update = True

    def __init__(self, tasks: Sequence[str], params: TrialParams) -> None:
        super().__init__(tasks, params)
        from automtl.training.optimizer import FusedAdam

        self.decay = float(self.value(params, "famo_decay"))
        self.logits = tf.Variable(tf.zeros([self.T]), trainable=False, name="famo_logits")
        # torch's Adam defaults (the paper's), as the reference implementation
        self.logit_optimizer = FusedAdam(float(self.value(params, "famo_lr")), [self.logits], epsilon=1e-8)

    def combine(self, losses):
        labelled = losses > 0  # a task without labels in the batch takes no part in this step
        z = tf.nn.softmax(self.logits)
        d = losses + LOG_EPS
        c = tf.stop_gradient(tf.reduce_sum(tf.where(labelled, z / d, 0.0)))
        count = tf.reduce_sum(tf.cast(labelled, tf.float32))  # the weights sum to the labelled tasks' count
        weights = tf.where(labelled, count * z / tf.maximum(c, 1e-30), 0.0)
        self.note_weights(tf.stop_gradient(weights / d), labelled)
        return tf.reduce_sum(tf.where(labelled, weights * tf.math.log(d), 0.0))

    def after_update(self, before, after) -> None:
        labelled = tf.logical_and(before > 0, after > 0)
        delta = tf.where(labelled, tf.math.log((before + LOG_EPS) / (after + LOG_EPS)), 0.0)  # exact at any scale
        with tf.GradientTape() as tape:
            tape.watch(self.logits)
            z = tf.nn.softmax(self.logits)
        grad = tape.gradient(z, self.logits, output_gradients=delta)
        self.logit_optimizer.apply_gradients([(grad + self.decay * self.logits, self.logits)])
