"""Dynamic loss scaling for float16 training with automtl's fused Adam.

Keras wraps its own optimizers in ``LossScaleOptimizer`` under the
``mixed_float16`` policy; the trainer's :class:`~automtl.training.optimizer.FusedAdam`
is not a Keras optimizer, so it gets the same algorithm here: gradients of
``scale * loss`` (seeded through ``output_gradients``, so the forward pass is
untouched), unscaled, and a step skipped with the scale halved when any
gradient overflowed; the scale doubles after ``growth_interval`` good steps.
"""

from __future__ import annotations

from typing import Any, Sequence

from automtl.lazy import tf


def _values(g: Any) -> tf.Tensor:
    return g.values if isinstance(g, tf.IndexedSlices) else g


def _unscale(g: Any, scale: tf.Tensor) -> Any:
    if g is None:
        return None
    if isinstance(g, tf.IndexedSlices):
        return tf.IndexedSlices(g.values / tf.cast(scale, g.values.dtype), g.indices, g.dense_shape)
    return g / tf.cast(scale, g.dtype)


class DynamicLossScale:
    """Keras' ``LossScaleOptimizer`` algorithm (initial scale 2**15, x2 after 2000 finite steps)."""

    def __init__(self, initial_scale: float = 2.0**15, growth_interval: int = 2000) -> None:
        self.scale = tf.Variable(initial_scale, dtype=tf.float32, trainable=False)
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.growth_interval = tf.constant(growth_interval, tf.int64)

    def gradients(self, tape: tf.GradientTape, loss: tf.Tensor, variables: Sequence[Any]) -> tuple[list, tf.Tensor]:
        """Unscaled gradients of ``loss`` and whether they are all finite (the scale is updated)."""
        scale = tf.identity(self.scale)
        grads = tape.gradient(loss, list(variables), output_gradients=tf.cast(scale, loss.dtype))
        grads = [_unscale(g, scale) for g in grads]
        checks = [tf.reduce_all(tf.math.is_finite(_values(g))) for g in grads if g is not None]
        finite = tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)
        self.update(finite)
        return grads, finite

    def update(self, finite: tf.Tensor) -> None:
        """After one step's gradients: halve the scale on overflow, double it after enough finite steps."""
        scale = tf.identity(self.scale)
        good = tf.where(finite, self.good_steps + 1, tf.constant(0, tf.int64))
        grow = good >= self.growth_interval
        self.scale.assign(tf.where(finite, tf.where(grow, scale * 2.0, scale), tf.maximum(scale / 2.0, 1.0)))
        self.good_steps.assign(tf.where(grow, tf.constant(0, tf.int64), good))

    def minimize(self, optimizer: Any, loss: tf.Tensor, tape: tf.GradientTape, variables: Sequence[Any]) -> None:
        """One optimizer step on ``loss``, skipped when the scaled gradients overflowed."""
        grads, finite = self.gradients(tape, loss, variables)
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]

        def step() -> tf.Tensor:
            optimizer.apply_gradients(pairs)
            return tf.constant(True)

        tf.cond(finite, step, lambda: tf.constant(False))
