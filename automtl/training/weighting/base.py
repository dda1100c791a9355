"""The small base class of weighting methods, with do-nothing defaults.

Two families share it. *Loss weightings* turn the ``[T]`` task losses into
one scalar (:meth:`Weighting.combine`) and may adapt between steps or epochs.
*Gradient manipulations* (``per_task_gradients = True``) get one gradient per
task on the shared variables, flattened into a ``[T, D]`` matrix, and return
the shared update direction (:meth:`Weighting.combine_gradients`); the heads'
gradients stay the plain gradient of :meth:`Weighting.combine`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np

from automtl.core.params import Declared
from automtl.core.trial_params import TrialParams
from automtl.lazy import tf

#: Added to norms before dividing by them.
EPS = 1e-12


class Weighting(Declared):
    """Default behaviour: a fixed weighted sum. Subclasses override what they change.

    A method declares its own ``parameters`` (read with :meth:`value`); its
    TensorFlow code runs only when a trial trains (``tf`` is imported lazily),
    so the declaration is light.
    """

    #: Gradient manipulation: the joint strategy computes one gradient per task on the shared variables
    #: (of :meth:`task_objectives`) and applies :meth:`combine_gradients`' direction to them.
    per_task_gradients: ClassVar[bool] = False
    #: The joint strategy evaluates each batch's losses again after the optimizer step and calls :meth:`after_update`.
    losses_after_update: ClassVar[bool] = False

    def __init__(self, tasks: Sequence[str], params: TrialParams) -> None:
        self.tasks = list(tasks)
        self.T = len(self.tasks)
        self.params = params
        self.weights = tf.Variable(np.asarray(self.initial_weights(params), np.float32), trainable=False,
                                   name="loss_weights")
        pairs = max(1, self.T * (self.T - 1) // 2)
        # per-epoch tallies (in the graph): noted per-step weights, task-gradient cosines, conflicting steps
        self._weight_sum = tf.Variable(tf.zeros([self.T]), trainable=False, name="weight_sum")
        self._weight_count = tf.Variable(tf.zeros([self.T]), trainable=False, name="weight_count")
        self._cosine_sum = tf.Variable(tf.zeros([pairs]), trainable=False, name="cosine_sum")
        self._cosine_count = tf.Variable(tf.zeros([pairs]), trainable=False, name="cosine_count")
        self._conflict_steps = tf.Variable(0.0, trainable=False, name="conflict_steps")
        self._gradient_steps = tf.Variable(0.0, trainable=False, name="gradient_steps")
        self._epoch_weights: np.ndarray | None = None

    def initial_weights(self, params: TrialParams) -> list[float]:
        """The weights training starts from (equal by default)."""
        return [1.0] * self.T

    @property
    def variables(self) -> list:
        """Extra trainable variables, optimised together with the model."""
        return []

    def combine(self, losses):
        """The scalar to minimise from the ``[T]`` vector of task losses (in the graph).

        For gradient manipulations, the heads (and other task-specific variables) follow its gradient.
        """
        return tf.reduce_sum(self.weights * losses)

    # -- loss weightings that adapt -------------------------------------------------------
    def wants_gradient_norms(self) -> bool:
        return False

    def after_step(self, losses, norms) -> None:
        """Called in the graph after each step with the task losses and, when
        :meth:`wants_gradient_norms`, the norms of each task's loss gradient on the last shared layer."""

    def after_update(self, before, after) -> None:
        """When ``losses_after_update``: called in the graph after each optimizer step with the batch's
        task losses before and after the step."""

    def end_epoch(self, epoch_losses: np.ndarray) -> None:
        """Called between epochs with the epoch's mean task losses."""

    # -- gradient manipulations -----------------------------------------------------------
    def task_objectives(self, losses):
        """The ``[T]`` terms whose gradients on the shared variables are taken per task (the losses by default)."""
        return losses

    def setup_gradients(self, dim: int, rng: Any) -> None:
        """Called once before tracing with the flattened size ``D`` of the shared variables and the trial's
        ``tf.random.Generator`` (for state of size ``D``, or random choices)."""

    def combine_gradients(self, grads, gram):
        """The ``[D]`` shared update direction from the ``[T, D]`` task gradients and their ``[T, T]`` Gram
        matrix (the plain sum by default)."""
        return tf.reduce_sum(grads, axis=0)

    def shared_update(self, grads):
        """What the joint strategy calls: tallies the task-gradient statistics, then :meth:`combine_gradients`."""
        gram = tf.matmul(grads, grads, transpose_b=True)
        self._tally_gradients(gram)
        return self.combine_gradients(grads, gram)

    def _tally_gradients(self, gram) -> None:
        if self.T < 2:
            return
        norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0))
        rows, cols = np.triu_indices(self.T, k=1)
        pairs = tf.stack([rows, cols], axis=1)
        dots = tf.gather_nd(gram, pairs)
        scale = tf.gather(norms, rows) * tf.gather(norms, cols)
        valid = tf.cast(scale > 0, tf.float32)  # a task without labels in the batch has no gradient
        self._cosine_sum.assign_add(valid * dots / tf.maximum(scale, EPS))
        self._cosine_count.assign_add(valid)
        self._conflict_steps.assign_add(tf.cast(tf.reduce_any(dots < 0), tf.float32))
        self._gradient_steps.assign_add(1.0)

    # -- what history.json keeps ----------------------------------------------------------
    def note_weights(self, weights, valid=None) -> None:
        """Tally this step's effective weights (in the graph); the epoch's record is their mean.

        ``valid`` marks the tasks whose weight means something this step (a task without labels in the
        batch has none).
        """
        valid = tf.ones([self.T]) if valid is None else tf.cast(valid, tf.float32)
        self._weight_sum.assign_add(tf.where(valid > 0, tf.cast(weights, tf.float32), 0.0))
        self._weight_count.assign_add(valid)

    def effective_weights(self) -> np.ndarray:
        """The weight each task's loss currently has in the combined loss (for methods that note weights per
        step: their mean over the last epoch)."""
        if self._epoch_weights is not None:
            return self._epoch_weights.copy()
        return self.weights.numpy().copy()

    def epoch_record(self) -> dict[str, float]:
        """This epoch's entries of ``history.json``, and a fresh start for the next epoch's tallies.

        ``weight.<task>``: effective weights. Methods with per-task gradients add ``grad_cosine`` (mean
        cosine between task gradients on the shared variables), ``grad_cosine.<a>.<b>`` per pair and
        ``conflict_share`` (share of steps where some pair of task gradients had a negative inner product).
        """
        count = self._weight_count.numpy()
        if count.any():
            sums = self._weight_sum.numpy()
            current = self.weights.numpy()
            self._epoch_weights = np.where(count > 0, sums / np.maximum(count, 1), current)
        row = {f"weight.{t}": float(w) for t, w in zip(self.tasks, self.effective_weights())}
        steps = float(self._gradient_steps.numpy())
        if steps > 0:
            sums, counts = self._cosine_sum.numpy(), self._cosine_count.numpy()
            rows, cols = np.triu_indices(self.T, k=1)
            for i, j, s, c in zip(rows, cols, sums, counts):
                row[f"grad_cosine.{self.tasks[i]}.{self.tasks[j]}"] = float(s / c) if c > 0 else float("nan")
            row["grad_cosine"] = float(sums.sum() / counts.sum()) if counts.sum() > 0 else float("nan")
            row["conflict_share"] = float(self._conflict_steps.numpy() / steps)
        for v in (self._weight_sum, self._weight_count, self._cosine_sum, self._cosine_count):
            v.assign(tf.zeros_like(v))
        self._conflict_steps.assign(0.0)
        self._gradient_steps.assign(0.0)
        return row
