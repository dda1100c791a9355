"""Adam (and AdamW) on TensorFlow's fused ``ResourceApplyAdam`` kernel.

Keras 3's optimizers trace a long chain of ops per variable; in a search of
many short trials that tracing is a large share of each trial. The fused
kernel is TensorFlow's own Adam update, one op per variable, with the same
maths and defaults as ``keras.optimizers.Adam``. Decoupled weight decay
(AdamW, Loshchilov & Hutter 2019, as ``keras.optimizers.AdamW`` applies it:
``var -= lr * weight_decay * var`` before the Adam step) is one more fused op
per decayed variable. The learning rate is a variable, so a schedule changes
it between epochs without retracing.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from automtl.lazy import tf

from automtl.devices import float16_compute
from automtl.training.loss_scale import DynamicLossScale


def _tf_variable(v):
    """The ``tf.Variable`` behind a Keras variable (or the variable itself)."""
    return getattr(v, "value", v) if not isinstance(v, tf.Variable) else v


class FusedAdam:
    """Minimal Adam with slots per variable, built eagerly before any tracing."""

    def __init__(self, learning_rate: float, variables: Sequence, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, weight_decay: float = 0.0) -> None:
        self.base_learning_rate = float(learning_rate)
        self.learning_rate = tf.Variable(learning_rate, dtype=tf.float32, trainable=False)
        self.weight_decay = float(weight_decay)
        self.beta_1, self.beta_2, self.epsilon = (tf.constant(x, tf.float32) for x in (beta_1, beta_2, epsilon))
        self.variables = [_tf_variable(v) for v in variables]
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._index = {id(v): i for i, v in enumerate(variables)}
        self._index.update({id(v): i for i, v in enumerate(self.variables)})
        # Kernels and embeddings decay; biases and normalisation scales do not (as is usual for AdamW).
        self._decays = [self.weight_decay > 0 and len(v.shape) >= 2 for v in self.variables]
        # float16 compute (mixed precision): gradients need loss scaling (see loss_scale.py)
        self.loss_scale = DynamicLossScale() if float16_compute() else None

    def apply_gradients(self, pairs: Iterable[tuple]) -> None:
        step = tf.cast(self.iterations.assign_add(1), tf.float32)
        b1_power, b2_power = tf.pow(self.beta_1, step), tf.pow(self.beta_2, step)
        for grad, var in pairs:
            i = self._index[id(var)]
            if self._decays[i]:
                tf.raw_ops.ResourceApplyGradientDescent(
                    var=self.variables[i].handle, alpha=self.learning_rate * self.weight_decay,
                    delta=self.variables[i].read_value(), use_locking=False)
            tf.raw_ops.ResourceApplyAdam(
                var=self.variables[i].handle, m=self.m[i].handle, v=self.v[i].handle,
                beta1_power=b1_power, beta2_power=b2_power, lr=self.learning_rate,
                beta1=self.beta_1, beta2=self.beta_2, epsilon=self.epsilon,
                grad=tf.convert_to_tensor(grad), use_locking=False)

    def scale_learning_rate(self, factor: float) -> None:
        """Set the learning rate to ``factor`` times the base rate (a schedule's step, between epochs)."""
        self.learning_rate.assign(self.base_learning_rate * factor)
