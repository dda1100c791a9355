"""The small base class of weighting methods, with do-nothing defaults."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf


class Weighting:
    """Default behaviour: a fixed weighted sum. Subclasses override what they change."""

    def __init__(self, tasks: Sequence[str], weights: Sequence[float], **options: float) -> None:
        self.tasks = list(tasks)
        self.T = len(self.tasks)
        self.weights = tf.Variable(np.asarray(weights, np.float32), trainable=False, name="loss_weights")

    @property
    def variables(self) -> list[tf.Variable]:
        """Extra trainable variables, optimised together with the model."""
        return []

    def combine(self, losses: tf.Tensor) -> tf.Tensor:
        """The scalar to minimise from the ``[T]`` vector of task losses (in the graph)."""
        return tf.reduce_sum(self.weights * losses)

    def wants_gradient_norms(self) -> bool:
        return False

    def after_step(self, losses: tf.Tensor, norms: tf.Tensor) -> None:
        """Called in the graph after each step with the task losses and, when
        :meth:`wants_gradient_norms`, the norms of each task's loss gradient on the last shared layer."""

    def end_epoch(self, epoch_losses: np.ndarray) -> None:
        """Called between epochs with the epoch's mean task losses."""

    def effective_weights(self) -> np.ndarray:
        """The weight each task's loss currently has in the combined loss."""
        return self.weights.numpy().copy()
