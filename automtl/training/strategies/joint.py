"""Joint training: one optimizer minimises the combination of the (masked) task losses.

A loss weighting combines the losses into one scalar. A gradient manipulation
(``Weighting.per_task_gradients``) instead gets one gradient per task on the
shared variables, from one forward pass and one backward pass per task on the
same tape (head gradients stay the plain gradient of the combined loss), and
returns the shared update direction.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from automtl.core import registry
from automtl.lazy import tf
from automtl.training.losses import task_loss
from automtl.training.optimizer import FusedAdam
from automtl.training.strategies.base import Strategy, apply_gradients, gather, regularisation


class JointTraining(Strategy):
    """Every step trains every task; the searched ``weighting`` method combines their losses."""

    weights_losses = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = [t.name for t in self.tasks]
        method = registry.member("weighting", str(self.params.get("weighting")))
        self.weighting = method(names, self.params)
        self.variables = list(self.model.trainable_variables) + self.weighting.variables
        self.norm_on = self.assembled.last_shared_variables() if self.weighting.wants_gradient_norms() else []
        if self.norm_on:  # which layers depends on the sharing scheme: the trial's history says
            self.notes = {"gradient_norms_on": self.assembled.measured_on}
        self.optimizer = FusedAdam(self.params.learning_rate, self.variables, weight_decay=self.params.weight_decay,
                                   lr_scales=self.assembled.lr_scales(self.variables))
        self.optimizers = [self.optimizer]
        self.manipulate = self.weighting.per_task_gradients
        if self.manipulate:
            self.shared = self.assembled.shared_variables()
            if not self.shared:  # e.g. sharing: none; every variable follows the combined loss
                self.manipulate = False
                self.notes = {**self.notes, "gradient_manipulation": "no variable is shared by several tasks: every "
                              "variable follows the gradient of the combined loss"}
        if self.manipulate:
            shared_ids = {id(v) for v in self.shared}
            self.task_specific = [v for v in self.variables if id(v) not in shared_ids]
            self.sizes = [int(np.prod(v.shape)) for v in self.shared]
            self.weighting.setup_gradients(sum(self.sizes), self.rng)

    def losses(self, x: dict, y: dict, mask: dict) -> Any:
        """The ``[T]`` masked task losses of one batch (a forward pass in training mode)."""
        out = self.assembled.training_model(x, training=True)
        return tf.stack([task_loss(t, y[t.name], out, mask[t.name]) for t in self.tasks])

    def step(self, x: dict, y: dict, mask: dict) -> Any:
        """One optimizer step on one batch; returns the task losses ``[T]``."""
        w = self.weighting
        with tf.GradientTape(persistent=bool(self.norm_on) or self.manipulate) as tape:
            losses = self.losses(x, y, mask)
            reg = regularisation(self.model)
            total = w.combine(losses) + reg
            terms = w.task_objectives(losses) if self.manipulate else None
        if self.norm_on:
            T = len(self.tasks)
            norms = tf.stack([tf.linalg.global_norm([g for g in tape.gradient(losses, self.norm_on,
                                                                              output_gradients=tf.one_hot(i, T))
                                                     if g is not None]) for i in range(T)])
        if self.manipulate:
            self.manipulated_step(tape, terms, total, reg)
        else:
            apply_gradients(self.optimizer, total, tape, self.variables)
        if self.norm_on:
            w.after_step(losses, norms)
        if w.losses_after_update:
            w.after_update(losses, tf.stop_gradient(self.losses(x, y, mask)))
        del tape
        return losses

    def manipulated_step(self, tape: Any, terms: Any, total: Any, reg: Any) -> None:
        """One step whose shared update is the weighting's combination of the per-task gradients."""
        T = len(self.tasks)
        scaler = self.optimizer.loss_scale  # float16 compute: scaled gradients, skipped step on overflow
        scale = tf.identity(scaler.scale) if scaler is not None else None
        rows = []
        for i in range(T):
            seed = tf.one_hot(i, T, dtype=terms.dtype)
            grads = tape.gradient(terms, self.shared, output_gradients=seed if scale is None else seed * scale)
            rows.append(tf.concat([_flat(g, v) for g, v in zip(grads, self.shared)], axis=0))
        task_grads = tf.stack(rows)
        others = tape.gradient(total, self.task_specific, output_gradients=scale)
        others = [None if g is None else tf.convert_to_tensor(g) for g in others]
        reg_grads = tape.gradient(reg, self.shared) if self.model.losses else [None] * len(self.shared)
        if scale is not None:
            task_grads = task_grads / scale
            others = [None if g is None else g / scale for g in others]
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in [task_grads, *others] if g is not None])
            scaler.update(finite)

        def apply() -> Any:
            direction = self.weighting.shared_update(task_grads)
            parts = tf.split(direction, self.sizes)
            pairs = [(tf.reshape(p, v.shape) + (0.0 if r is None else tf.convert_to_tensor(r)), v)
                     for p, r, v in zip(parts, reg_grads, self.shared)]
            pairs += [(g, v) for g, v in zip(others, self.task_specific) if g is not None]
            self.optimizer.apply_gradients(pairs)
            return tf.constant(True)

        if scale is None:
            apply()
        else:
            tf.cond(finite, apply, lambda: tf.constant(False))

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
            # batch dimension None: the last, smaller batch needs no second trace
            self._step_fn = tf.function(lambda x, y, m: self.step(*self.augment(x, y, m)),
                                        input_signature=dataset.element_spec)
        total, count = np.zeros(len(self.tasks)), 0
        for xb, yb, mb in dataset:
            total += self._step_fn(xb, yb, mb).numpy()
            count += 1
        return total / max(count, 1)


def _flat(grad: Any, var: Any) -> Any:
    """A task's gradient on one shared variable as a flat float32 vector (zeros where the task does not reach it)."""
    if grad is None:
        return tf.zeros([int(np.prod(var.shape))], tf.float32)
    return tf.reshape(tf.cast(tf.convert_to_tensor(grad), tf.float32), [-1])
