"""Alternating training: each step picks one task and runs that task's own optimizer on its loss alone.

The shared layers move with every task, a head (and a task's own copies of
trunk levels) only with its own. Batches
for a task are drawn from the examples that carry its label, so tasks
labelled on different examples (or on few) train as well as fully labelled ones.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np

from automtl.core.params import ParamSpec, choice, positive
from automtl.errors import TrialFailed
from automtl.lazy import tf
from automtl.training.losses import task_loss
from automtl.training.optimizer import FusedAdam
from automtl.training.strategies.base import Strategy, apply_gradients, gather, regularisation

SAMPLING = ("uniform", "proportional")


class AlternatingTraining(Strategy):
    parameters = (
        choice("task_sampling", SAMPLING, "uniform", "uniform: by task_prob alone; proportional: also by labelled count",
               multi_task=True),
        positive("task_prob", 1.0, "relative chance of the task being picked for a step", per_task=True,
                 multi_task=True),
        ParamSpec("learning_rate", None, low=0, low_open=True, per_task=True,
                  doc="the task's own optimizer's step size (default: learning_rate)"),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = [t.name for t in self.tasks]
        # Each task's optimizer moves what its output depends on: shared levels, its own copies, its head.
        # A soft-sharing penalty in model.losses then moves only the trained task's copies (its own terms).
        self.variables = [self.assembled.task_variables(t) for t in names]
        self.optimizers = [FusedAdam(self.params.task_learning_rate(t), v, weight_decay=self.params.weight_decay,
                                     lr_scales=self.assembled.lr_scales(v))
                           for t, v in zip(names, self.variables)]
        self.labelled = [np.flatnonzero(_example_mask(self.train.mask[t])) for t in names]
        self.task_probs = sampling_probabilities([self.params.task_prob(t) for t in names],
                                                 [len(ix) for ix in self.labelled],
                                                 str(self.value(self.params, "task_sampling")))

    def branch(self, index: int, x: dict, y: dict, mask: dict) -> Any:
        """Task ``index``'s step; returns its loss in a one-hot ``[T]`` vector."""
        task = self.tasks[index]
        with tf.GradientTape() as tape:
            out = self.assembled.training_model(x, training=True)
            loss = task_loss(task, y[task.name], out, mask[task.name])
            total = loss + regularisation(self.model)
        apply_gradients(self.optimizers[index], total, tape, self.variables[index])
        return tf.one_hot(index, len(self.tasks)) * loss

    def switch(self, index: Any, batch_for: Callable[[int], tuple[dict, dict, dict]]) -> Any:
        """Run task ``index``'s step on the batch that ``batch_for(i)`` draws for it."""
        # functools.partial, not lambdas: autograph re-parses lambda source and can mangle it.
        branches = [functools.partial(self._branch_on, i, batch_for) for i in range(len(self.tasks))]
        return tf.switch_case(index, branches)

    def _branch_on(self, index: int, batch_for: Callable[[int], tuple[dict, dict, dict]]) -> Any:
        x, y, mask = batch_for(index)
        return self.branch(index, x, y, mask)

    def in_memory_epoch(self, x: dict, y: dict, m: dict, batch: int, steps: int) -> Callable[[], Any]:
        T, rng = len(self.tasks), self.rng
        labelled = [tf.constant(ix, tf.int64) for ix in self.labelled]
        cum = tf.constant(np.cumsum(self.task_probs)[:-1], tf.float32)

        def batch_for(i: int) -> tuple[dict, dict, dict]:
            pick = rng.uniform([batch], 0, max(1, len(self.labelled[i])), dtype=tf.int64)
            idx = tf.gather(labelled[i], pick)
            return self.augment(gather(x, idx), gather(y, idx), gather(m, idx))

        @tf.function
        def epoch() -> Any:
            total, counts = tf.zeros([T]), tf.zeros([T])
            for _ in tf.range(steps):
                task = tf.searchsorted(cum, rng.uniform([1]), side="right")[0]
                total += self.switch(tf.cast(task, tf.int32), batch_for)
                counts += tf.one_hot(task, T)
            return total / tf.maximum(counts, 1.0)

        return epoch

    def streamed_epoch(self, dataset: Any) -> np.ndarray:
        T = len(self.tasks)
        if not hasattr(self, "_branch_fns"):
            self._branch_fns = [tf.function(functools.partial(self._streamed_branch, i),
                                            input_signature=dataset.element_spec) for i in range(T)]
        total, counts = np.zeros(T), np.zeros(T)
        for xb, yb, mb in dataset:
            i = int(self.np_rng.choice(T, p=self.task_probs))
            total += self._branch_fns[i](xb, yb, mb).numpy()
            counts[i] += 1
        return total / np.maximum(counts, 1)

    def _streamed_branch(self, index: int, x: dict, y: dict, m: dict) -> Any:
        return self.branch(index, *self.augment(x, y, m))


def sampling_probabilities(relative: Sequence[float], labelled: Sequence[int], mode: str) -> np.ndarray:
    """Chance of each task being picked per alternating step.

    ``uniform``: by the relative ``task_prob`` alone; ``proportional``: also
    times the task's number of labelled examples. Tasks without labels never run.
    """
    if mode not in SAMPLING:
        raise TrialFailed(f"unknown task_sampling '{mode}'; expected uniform or proportional")
    counts = np.asarray(labelled, np.float64)
    weights = np.asarray(relative, np.float64) * (counts if mode == "proportional" else 1.0)
    weights = np.where(counts > 0, weights, 0.0)
    return weights / weights.sum()


def _example_mask(mask: np.ndarray) -> np.ndarray:
    return mask.reshape(len(mask), -1).max(axis=1) > 0
