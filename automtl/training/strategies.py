"""Training strategies: one gradient step of joint or alternating training.

Both are plain functions traced into the trainer's compiled epoch, so the
same step code serves the in-memory loop and the streamed ``tf.data`` loop.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

from automtl.api import Task
from automtl.model.assemble import Assembled
from automtl.training.losses import masked_mean
from automtl.training.optimizer import FusedAdam
from automtl.training.weighting import Weighting


def _regularisation(model: keras.Model) -> tf.Tensor:
    return tf.add_n([tf.cast(l, tf.float32) for l in model.losses]) if model.losses else tf.constant(0.0)


def _apply(optimizer: FusedAdam, loss: tf.Tensor, tape: tf.GradientTape, variables: list) -> None:
    if optimizer.loss_scale is not None:  # mixed precision
        optimizer.loss_scale.minimize(optimizer, loss, tape, variables)
        return
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])


class JointStep:
    """One optimizer on the combination of the (masked) task losses that ``weighting`` makes."""

    def __init__(self, assembled: Assembled, tasks: Sequence[Task], weighting: Weighting, learning_rate: float):
        self.model = assembled.model
        self.tasks = list(tasks)
        self.weighting = weighting
        self.variables = list(self.model.trainable_variables) + weighting.variables
        self.norm_on = assembled.last_shared_variables() if weighting.wants_gradient_norms() else []
        self.optimizer = FusedAdam(learning_rate, self.variables)

    def __call__(self, x: dict, y: dict, mask: dict) -> tf.Tensor:
        with tf.GradientTape(persistent=bool(self.norm_on)) as tape:
            out = self.model(x, training=True)
            each = [masked_mean(t.loss(y[t.name], out[t.name]), mask[t.name]) for t in self.tasks]
            losses = tf.stack(each)
            total = self.weighting.combine(losses) + _regularisation(self.model)
        if self.norm_on:
            norms = tf.stack([tf.linalg.global_norm([g for g in tape.gradient(l, self.norm_on) if g is not None])
                              for l in each])
        _apply(self.optimizer, total, tape, self.variables)
        if self.norm_on:
            self.weighting.after_step(losses, norms)
            del tape
        return losses


class AlternatingStep:
    """Each step updates the trunk and one task's head with that task's own optimizer."""

    def __init__(self, assembled: Assembled, tasks: Sequence[Task], learning_rates: Sequence[float]):
        self.model = assembled.model
        self.tasks = list(tasks)
        shared = assembled.shared_variables()
        self.variables = [shared + list(assembled.heads[t.name].trainable_variables) for t in self.tasks]
        self.optimizers = []
        for lr, variables in zip(learning_rates, self.variables):
            self.optimizers.append(FusedAdam(lr, variables))

    def branch(self, index: int, x: dict, y: dict, mask: dict) -> tf.Tensor:
        task = self.tasks[index]
        with tf.GradientTape() as tape:
            out = self.model(x, training=True)
            loss = masked_mean(task.loss(y[task.name], out[task.name]), mask[task.name])
            total = loss + _regularisation(self.model)
        _apply(self.optimizers[index], total, tape, self.variables[index])
        return tf.one_hot(index, len(self.tasks)) * loss

    def switch(self, index: tf.Tensor, batch_for: Callable[[int], tuple[dict, dict, dict]]) -> tf.Tensor:
        """Run task ``index``'s step on the batch that ``batch_for(i)`` draws for it."""
        # functools.partial, not lambdas: autograph re-parses lambda source and can mangle it.
        branches = [functools.partial(self._branch_on, i, batch_for) for i in range(len(self.tasks))]
        return tf.switch_case(index, branches)

    def _branch_on(self, index: int, batch_for: Callable[[int], tuple[dict, dict, dict]]) -> tf.Tensor:
        x, y, mask = batch_for(index)
        return self.branch(index, x, y, mask)


def gather(tensors: dict[str, Any], idx: tf.Tensor) -> dict[str, tf.Tensor]:
    return {k: tf.gather(v, idx) for k, v in tensors.items()}
