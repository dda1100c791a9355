"""Loss helpers shared by every strategy."""

from __future__ import annotations

from typing import Any

from automtl.lazy import tf
from automtl.model.keys import MEMBERS


def masked_mean(per_example: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean loss over labelled entries only; 0 when a batch has none.

    ``mask`` has the loss's shape, so a missing label never contributes, not
    even as a fake zero target.
    """
    per_example = tf.cast(per_example, tf.float32)
    mask = tf.reshape(tf.cast(mask, tf.float32), tf.shape(per_example))
    return tf.reduce_sum(per_example * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def task_loss(task: Any, y: tf.Tensor, out: dict[str, tf.Tensor], mask: tf.Tensor) -> tf.Tensor:
    """``task``'s masked mean loss on one batch. With a TabM trunk (per-member outputs in ``out``)
    each member learns on its own: the mean of the k members' losses, as in TabM, never the loss of
    their average (which would train one model, not k)."""
    members = out.get(MEMBERS.format(task.name))
    if members is None:
        return masked_mean(task.loss(y, out[task.name]), mask)
    k = int(members.shape[1])
    flat = tf.reshape(members, [-1, *members.shape[2:]])  # row i*k + j: member j on example i
    return masked_mean(task.loss(tf.repeat(y, k, axis=0), flat), tf.repeat(mask, k, axis=0))
