"""The small base class of weighting methods, with do-nothing defaults."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from automtl.lazy import tf
from automtl.params import Declared
from automtl.trial import TrialParams


class Weighting(Declared):
    """Default behaviour: a fixed weighted sum. Subclasses override what they change.

    A method declares its own ``parameters`` (read with :meth:`value`); its
    TensorFlow code runs only when a trial trains (``tf`` is imported lazily),
    so the declaration is light.
    """

    def __init__(self, tasks: Sequence[str], params: TrialParams) -> None:
        self.tasks = list(tasks)
        self.T = len(self.tasks)
        self.params = params
        self.weights = tf.Variable(np.asarray(self.initial_weights(params), np.float32), trainable=False,
                                   name="loss_weights")

    def initial_weights(self, params: TrialParams) -> list[float]:
        """The weights training starts from (equal by default)."""
        return [1.0] * self.T

    @property
    def variables(self) -> list:
        """Extra trainable variables, optimised together with the model."""
        return []

    def combine(self, losses):
        """The scalar to minimise from the ``[T]`` vector of task losses (in the graph)."""
        return tf.reduce_sum(self.weights * losses)

    def wants_gradient_norms(self) -> bool:
        return False

    def after_step(self, losses, norms) -> None:
        """Called in the graph after each step with the task losses and, when
        :meth:`wants_gradient_norms`, the norms of each task's loss gradient on the last shared layer."""

    def end_epoch(self, epoch_losses: np.ndarray) -> None:
        """Called between epochs with the epoch's mean task losses."""

    def effective_weights(self) -> np.ndarray:
        """The weight each task's loss currently has in the combined loss."""
        return self.weights.numpy().copy()
