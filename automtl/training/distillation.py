"""Knowledge distillation: a task that learns from hard labels and a teacher's soft outputs at once.

:class:`DistilledTask` wraps a task for the student's training. Each example's
target packs the hard label, the teacher's soft target (the task's
``distill_targets``) and both masks into one array, so the trainer, the
strategies and input augmentation handle it like any target. Per entry:

- labelled: ``(1 - SOFT_WEIGHT) * hard loss + SOFT_WEIGHT * teacher loss`` (weight 1);
- unlabelled, where the teacher has a target: the teacher loss alone, with weight
  ``FILL_WEIGHT`` (< 1: a teacher's guess counts less than a real label).

Box targets (``Task.box_targets``) pack as boxes, so augmentation moves the
teacher's boxes with the image: ``[flag, hard boxes..., teacher boxes...]`` where
the flag row ``(k, 0, 0, 0, -2 | -3)`` holds the number of hard boxes and whether
the row is labelled (a class id below 0, which augmentation leaves alone).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from automtl.plugin_base import Targets, Task
from automtl.lazy import tf

#: Share of the teacher's loss on labelled entries (Hinton et al.'s alpha).
SOFT_WEIGHT = 0.5
#: Weight of an entry the teacher fills in (no label), relative to a labelled entry.
FILL_WEIGHT = 0.5
_LABELLED, _UNLABELLED = -2.0, -3.0


class DistilledTask(Task):
    """``inner`` as a student learns it: the same head, metrics and outputs; a packed target."""

    def __init__(self, inner: Task, temperature: float, hard: np.ndarray, hard_mask: np.ndarray, soft: Targets) -> None:
        # No options to validate: everything is the inner task's.
        self.inner = inner
        self.name = inner.name
        self.options = inner.options
        self.view = inner.view
        self.primary_metric = inner.primary_metric
        self.direction = inner.direction
        self.box_targets = inner.box_targets
        self.boxes_input = inner.boxes_input
        self.type_name = getattr(inner, "type_name", type(inner).__name__)
        self.temperature = float(temperature)
        n = len(hard)
        self.hard_shape = tuple(hard.shape[1:])
        self.hard_int = hard.dtype.kind in "iub"
        self.mask_shape = tuple(hard_mask.shape[1:])
        self.soft_shape = tuple(soft.y.shape[1:])
        if tuple(soft.mask.shape) != tuple(hard_mask.shape):
            raise ValueError(f"task '{inner.name}': distill_targets' mask has shape {soft.mask.shape}, its labels' "
                             f"mask {hard_mask.shape}")
        if self.box_targets:
            self.k_hard, self.k_soft = hard.shape[1], soft.y.shape[1]
        else:
            self.sizes = (int(np.prod(self.hard_shape)), int(np.prod(self.soft_shape)), int(np.prod(self.mask_shape)))
        self.rows = n

    # -- packing (numpy) ------------------------------------------------------------------
    def pack(self, hard: np.ndarray, hard_mask: np.ndarray, soft: Targets | None) -> tuple[np.ndarray, np.ndarray]:
        """``(packed target, entry weights)``; ``soft`` None packs no teacher (validation rows)."""
        n = len(hard)
        m = hard_mask.astype(np.float32)
        if soft is None:
            soft_y = np.zeros((n, *self.soft_shape), np.float32)
            if self.box_targets:
                soft_y[..., 4] = -1.0
            soft = Targets(y=soft_y, mask=np.zeros_like(m))
        sm = soft.mask.astype(np.float32)
        weight = m + (1.0 - m) * FILL_WEIGHT * sm
        if self.box_targets:
            flag = np.zeros((n, 1, 5), np.float32)
            flag[:, 0, 0] = hard.shape[1]
            flag[:, 0, 4] = np.where(m > 0, _LABELLED, _UNLABELLED)
            packed = np.concatenate([flag, hard.astype(np.float32), soft.y.astype(np.float32)], axis=1)
            return packed, weight
        flat = [hard.reshape(n, -1).astype(np.float32), soft.y.reshape(n, -1).astype(np.float32),
                m.reshape(n, -1), sm.reshape(n, -1)]
        return np.concatenate(flat, axis=1), weight

    def hard_labels(self, packed: np.ndarray) -> np.ndarray:
        """The hard labels back from a packed target (numpy)."""
        n = len(packed)
        if self.box_targets:
            k = int(packed[0, 0, 0]) if n else self.k_hard
            return packed[:, 1 : 1 + k]
        hard = packed[:, : self.sizes[0]].reshape(n, *self.hard_shape)
        return np.rint(hard).astype(np.int32) if self.hard_int else hard

    # -- the task, delegated ----------------------------------------------------------------
    def build_head(self, features: Any, params: Any) -> Any:
        return self.inner.build_head(features, params)

    def register_keras_objects(self) -> None:
        self.inner.register_keras_objects()

    def evaluate(self, y_true: np.ndarray, mask: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        return self.inner.evaluate(self.hard_labels(y_true), mask, y_pred)

    def score(self, metrics: Mapping[str, float]) -> float:
        return self.inner.score(metrics)

    def postprocess(self, raw: Any) -> dict[str, Any]:
        return self.inner.postprocess(raw)

    def postprocess_with_inputs(self, raw: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return self.inner.postprocess_with_inputs(raw, inputs)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def loss(self, y_true: Any, y_pred: Any) -> Any:
        """Per entry: the hard/teacher mixture divided by the entry's weight, so the trainer's
        masked mean (weights as mask) gives ``sum(weighted losses) / sum(weights)``."""
        y = tf.cast(y_true, tf.float32)
        if self.box_targets:
            hard = y[:, 1 : 1 + self.k_hard]
            soft = y[:, 1 + self.k_hard : 1 + self.k_hard + self.k_soft]
            m = tf.cast(y[:, 0, 4] > (_LABELLED + _UNLABELLED) / 2, tf.float32)
            sm = tf.ones_like(m)
        else:
            a, b, c = self.sizes
            hard = tf.reshape(y[:, :a], [-1, *self.hard_shape])
            if self.hard_int:
                hard = tf.cast(tf.round(hard), tf.int32)
            soft = tf.reshape(y[:, a : a + b], [-1, *self.soft_shape])
            m = tf.reshape(y[:, a + b : a + b + c], [-1, *self.mask_shape])
            sm = tf.reshape(y[:, a + b + c :], [-1, *self.mask_shape])
        hard_loss = tf.cast(self.inner.loss(hard, y_pred), tf.float32)
        soft_loss = tf.cast(self.inner.distill_loss(soft, y_pred, self.temperature), tf.float32)
        weight = m + (1.0 - m) * FILL_WEIGHT * sm
        mixed = m * ((1.0 - SOFT_WEIGHT) * hard_loss + SOFT_WEIGHT * sm * soft_loss) + (1.0 - m) * FILL_WEIGHT * sm * soft_loss
        return tf.math.divide_no_nan(mixed, weight)
