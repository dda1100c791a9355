"""Joint training: one optimizer minimises the combination of the (masked) task losses."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from automtl import registry
from automtl.lazy import tf
from automtl.training.losses import masked_mean
from automtl.training.optimizer import FusedAdam
from automtl.training.strategies.base import Strategy, apply_gradients, gather, regularisation


class JointTraining(Strategy):
    """Every step trains every task; the searched ``weighting`` method combines their losses."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = [t.name for t in self.tasks]
        method = registry.member("weighting", str(self.params.get("weighting")))
        self.weighting = method(names, self.params)
        self.variables = list(self.model.trainable_variables) + self.weighting.variables
        self.norm_on = self.assembled.last_shared_variables() if self.weighting.wants_gradient_norms() else []
        if self.norm_on:  # which layers depends on the sharing scheme: the trial's history says
            self.notes = {"gradient_norms_on": self.assembled.measured_on}
        self.optimizer = FusedAdam(self.params.learning_rate, self.variables, weight_decay=self.params.weight_decay)
        self.optimizers = [self.optimizer]

    def step(self, x: dict, y: dict, mask: dict) -> Any:
        """One optimizer step on one batch; returns the task losses ``[T]``."""
        with tf.GradientTape(persistent=bool(self.norm_on)) as tape:
            out = self.model(x, training=True)
            each = [masked_mean(t.loss(y[t.name], out[t.name]), mask[t.name]) for t in self.tasks]
            losses = tf.stack(each)
            total = self.weighting.combine(losses) + regularisation(self.model)
        if self.norm_on:
            norms = tf.stack([tf.linalg.global_norm([g for g in tape.gradient(l, self.norm_on) if g is not None])
                              for l in each])
        apply_gradients(self.optimizer, total, tape, self.variables)
        if self.norm_on:
            self.weighting.after_step(losses, norms)
            del tape
        return losses

    def in_memory_epoch(self, x: dict, y: dict, m: dict, batch: int, steps: int) -> Callable[[], Any]:
        T, n, rng = len(self.tasks), len(self.train), self.rng

        @tf.function
        def epoch() -> Any:
            perm = tf.argsort(rng.uniform([n]))
            total = tf.zeros([T])
            for i in tf.range(steps):
                idx = perm[i * batch : (i + 1) * batch]
                total += self.step(*self.augment(gather(x, idx), gather(y, idx), gather(m, idx)))
            return total / steps

        return epoch

    def streamed_epoch(self, dataset: Any) -> np.ndarray:
        if not hasattr(self, "_step_fn"):
            self._step_fn = tf.function(lambda x, y, m: self.step(*self.augment(x, y, m)))
        total, count = np.zeros(len(self.tasks)), 0
        for xb, yb, mb in dataset:
            total += self._step_fn(xb, yb, mb).numpy()
            count += 1
        return total / max(count, 1)
