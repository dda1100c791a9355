"""Loss helpers shared by every strategy."""

from __future__ import annotations

from automtl.lazy import tf


def masked_mean(per_example: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean loss over labelled entries only; 0 when a batch has none.

    ``mask`` has the loss's shape, so a missing label never contributes, not
    even as a fake zero target.
    """
    per_example = tf.cast(per_example, tf.float32)
    mask = tf.reshape(tf.cast(mask, tf.float32), tf.shape(per_example))
    return tf.reduce_sum(per_example * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
