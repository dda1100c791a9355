"""The built-in ``classification`` task: binary, multi-class and multi-label.

Labels may be strings or integers. Multi-label targets are either several
0/1 columns (``target: [a, b, c]``) or one column of separator-joined labels
(``multilabel: true``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

import pydantic

from automtl.api import (DataError, HeadParams, Options, Table, Targets, Task, TrialParams, as_float, dense_block,
                         is_missing, ParamSpec)

log = logging.getLogger("automtl")


class ClassificationOptions(Options):
    target: str | list[str]
    multilabel: bool = False
    separator: str = "|"
    classes: list[str | int] | None = None
    label_smoothing: float = pydantic.Field(0.0, ge=0.0, lt=1.0, description="share of each target spread over all classes")


class ClassificationTask(Task):
    Options = ClassificationOptions
    primary_metric = "accuracy"
    direction = "maximize"
    tiebreak_metric = "log_loss"  # single-label modes report it; multilabel does not (ties stay ties)
    #: ``label_smoothing`` (global, or per task as ``label_smoothing.<task>``) overrides the option.
    parameters = {"label_smoothing": ParamSpec("label_smoothing", 0.0, low=0.0, high=1.0, high_open=True, per_task=True,
                                               doc="share of each target spread over the classes")}

    def __init__(self, name: str, options: Any = None) -> None:
        super().__init__(name, options)
        self.mode = "multilabel" if (self.options.multilabel or isinstance(self.options.target, list)) else "single"
        if self.mode == "multilabel":
            self.primary_metric = "f1_micro"
        self.smoothing = float(self.options.label_smoothing)

    def configure(self, params: TrialParams) -> None:
        value = params.for_task("label_smoothing", self.name)
        self.smoothing = float(self.options.label_smoothing if value is None else value)

    def auto_space(self) -> dict[str, Any]:
        """Label smoothing joins the ``auto`` space unless the experiment fixes it."""
        if self.options.label_smoothing > 0:
            return {}
        return super().auto_space()

    # -- labels -----------------------------------------------------------------------
    def _owner(self) -> str:
        return f"task '{self.name}'"

    def _label_sets(self, data: Table) -> tuple[list[set[str]], np.ndarray]:
        col = data.column(self.options.target, needed_by=self._owner())
        missing = is_missing(col)
        sets = [set() if miss else {s.strip() for s in str(v).split(self.options.separator) if s.strip()}
                for v, miss in zip(col, missing)]
        return sets, ~missing

    def prepare(self, train: Table) -> None:
        if self.mode == "multilabel" and isinstance(self.options.target, list):
            self.classes = [str(c) for c in self.options.target]
        elif self.mode == "multilabel":
            sets, _ = self._label_sets(train)
            self.classes = self.options.classes and [str(c) for c in self.options.classes] or sorted(set().union(*sets))
        else:
            col = train.column(self.options.target, needed_by=self._owner())
            present = col[~is_missing(col)]
            if len(present) == 0:
                raise DataError(f"{train.source}: {self._owner()} column '{self.options.target}' is empty in every "
                                "row of the training data: no labels to learn from")
            if present.dtype.kind == "f" and not np.all(np.isfinite(present)):
                raise DataError(f"{train.source}: {self._owner()} column '{self.options.target}' holds an infinite "
                                "value; class labels must be whole numbers or strings")
            if self.options.classes is not None:
                self.classes = list(self.options.classes)
            elif present.dtype.kind in "fiu":
                values = np.unique(present)
                if not np.all(values == np.round(values)):
                    raise DataError(f"{train.source}: {self._owner()} column '{self.options.target}' holds "
                                    "non-integer numbers; use a regression task or string labels")
                self.classes = [int(v) for v in values]
            else:
                self.classes = sorted({_norm(v) for v in present}, key=_sort_key)
        if len(self.classes) < 2:
            raise DataError(f"{train.source}: {self._owner()} needs at least two classes, found {self.classes}")
        self.index = {_norm(c): i for i, c in enumerate(self.classes)}
        self.binary = self.mode == "single" and len(self.classes) == 2

    def targets(self, data: Table) -> Targets:
        n = len(data)
        if self.mode == "multilabel" and isinstance(self.options.target, list):
            cols = [as_float(data, c, needed_by=self._owner()) for c in self.options.target]
            values = np.column_stack(cols)
            mask = ~np.isnan(values).any(axis=1)
            return Targets(y=np.where(np.isnan(values), 0.0, values).astype(np.float32), mask=mask)
        if self.mode == "multilabel":
            sets, mask = self._label_sets(data)
            y = np.zeros((n, len(self.classes)), np.float32)
            for i, labels in enumerate(sets):
                for label in labels:
                    if label in self.index:
                        y[i, self.index[label]] = 1.0
            return Targets(y=y, mask=mask)
        col = data.column(self.options.target, needed_by=self._owner())
        mask = ~is_missing(col)
        ids = np.zeros(n, np.int32)
        unknown = 0
        for i in np.flatnonzero(mask):
            key = _norm(col[i])
            if key in self.index:
                ids[i] = self.index[key]
            else:
                mask[i] = False
                unknown += 1
        if unknown:
            log.warning("%s: %s: %d labelled rows hold classes not seen in training; they are left out of "
                        "this task's loss and metrics", data.source, self._owner(), unknown)
        y = ids.astype(np.float32)[:, None] if self.binary else ids
        return Targets(y=y, mask=mask)

    # -- model ------------------------------------------------------------------------
    def build_head(self, features: Any, params: HeadParams) -> Any:
        import keras

        x = dense_block(features, params.units, params.depth, params.dropout, params.l2, name="hidden",
                        norm=params.norm)
        width = 1 if self.binary else len(self.classes)
        return keras.layers.Dense(width, name="logits")(x)

    def loss(self, y_true: Any, y_pred: Any) -> Any:
        import keras

        ops = keras.ops
        logits = ops.cast(y_pred, "float32")
        eps = self.smoothing
        if self.mode == "multilabel" or self.binary:
            target = ops.cast(y_true, "float32")
            if eps > 0:  # towards 0.5: the two-class case of spreading eps over the classes
                target = target * (1.0 - eps) + 0.5 * eps
            loss = ops.binary_crossentropy(target, logits, from_logits=True)
            return ops.mean(loss, axis=-1) if self.mode == "multilabel" else loss[:, 0]
        if eps > 0:
            k = len(self.classes)
            target = ops.one_hot(ops.cast(y_true, "int32"), k) * (1.0 - eps) + eps / k
            return ops.categorical_crossentropy(target, logits, from_logits=True)
        return ops.sparse_categorical_crossentropy(y_true, logits, from_logits=True)

    def _probs(self, raw: np.ndarray) -> np.ndarray:
        raw = raw.astype(np.float64)
        if self.mode == "multilabel" or self.binary:
            return 1.0 / (1.0 + np.exp(-raw))
        z = np.exp(raw - raw.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def evaluate(self, y_true: np.ndarray, mask: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        m = mask.astype(bool)
        if not m.any():
            return {self.primary_metric: float("nan"), "labelled": 0.0}
        probs, y = self._probs(y_pred[m]), y_true[m]
        if self.mode == "multilabel":
            pred = probs > 0.5
            truth = y > 0.5
            tp = float((pred & truth).sum())
            denom = float(pred.sum() + truth.sum())
            return {
                "f1_micro": 2 * tp / denom if denom else 1.0,
                "subset_accuracy": float((pred == truth).all(axis=1).mean()),
                "labelled": float(m.sum()),
            }
        if self.binary:
            p1 = probs[:, 0]
            truth = y[:, 0]
            acc = float(((p1 > 0.5) == (truth > 0.5)).mean())
            p_true = np.where(truth > 0.5, p1, 1 - p1)
        else:
            acc = float((probs.argmax(axis=1) == y).mean())
            p_true = probs[np.arange(len(y)), y]
        return {"accuracy": acc, "log_loss": float(-np.log(np.clip(p_true, 1e-12, 1)).mean()), "labelled": float(m.sum())}

    def postprocess(self, raw: Any) -> dict[str, Any]:
        import tensorflow as tf

        raw = tf.cast(raw, tf.float32)
        names = tf.constant([str(c) for c in self.classes])
        if self.mode == "multilabel":
            probs = tf.sigmoid(raw)
            return {"probabilities": probs, "labels": tf.cast(probs > 0.5, tf.int32)}
        if self.binary:
            p1 = tf.sigmoid(raw)
            probs = tf.concat([1.0 - p1, p1], axis=1)
        else:
            probs = tf.nn.softmax(raw)
        class_id = tf.argmax(probs, axis=1, output_type=tf.int32)
        return {"class_id": class_id, "label": tf.gather(names, class_id), "probabilities": probs}

    def label_outputs(self) -> dict[str, tuple[str, list[str]]]:
        return {} if self.mode == "multilabel" else {"label": ("class_id", [str(c) for c in self.classes])}

    # -- ensembles and distillation ------------------------------------------------------
    def _sigmoid_out(self) -> bool:
        return self.mode == "multilabel" or self.binary

    def combine(self, raw_outputs: Any, weights: Any) -> Any:
        """The weighted mean of the members' probabilities, as logits again (softmax or
        sigmoid of the result gives back exactly that mean)."""
        import tensorflow as tf

        total = float(sum(weights))
        if self._sigmoid_out():
            p = tf.add_n([float(w) / total * tf.sigmoid(tf.cast(r, tf.float32)) for r, w in zip(raw_outputs, weights)])
            p = tf.clip_by_value(p, 1e-7, 1.0 - 1e-7)
            return tf.math.log(p) - tf.math.log1p(-p)
        p = tf.add_n([float(w) / total * tf.nn.softmax(tf.cast(r, tf.float32)) for r, w in zip(raw_outputs, weights)])
        return tf.math.log(tf.maximum(p, 1e-12))

    def distill_targets(self, teacher_raw: np.ndarray, temperature: float) -> Targets:
        """The teacher's probabilities softened by ``temperature`` (Hinton et al., 2015)."""
        z = teacher_raw.astype(np.float64) / temperature
        if self._sigmoid_out():
            soft = 1.0 / (1.0 + np.exp(-z))
        else:
            e = np.exp(z - z.max(axis=1, keepdims=True))
            soft = e / e.sum(axis=1, keepdims=True)
        return Targets(y=soft.astype(np.float32), mask=np.ones(len(teacher_raw), np.float32))

    def distill_loss(self, soft: Any, y_pred: Any, temperature: float) -> Any:
        """Cross-entropy with the softened teacher, scaled by T^2 so its gradients keep their size."""
        import keras

        logits = keras.ops.cast(y_pred, "float32") / temperature
        t2 = float(temperature) ** 2
        if self._sigmoid_out():
            return t2 * keras.ops.mean(keras.ops.binary_crossentropy(soft, logits, from_logits=True), axis=-1)
        return t2 * keras.ops.categorical_crossentropy(soft, logits, from_logits=True)

    def describe(self) -> dict[str, Any]:
        mode = "multilabel" if self.mode == "multilabel" else ("binary" if self.binary else "multiclass")
        return {"mode": mode, "classes": [c if isinstance(c, int) else str(c) for c in self.classes]}


def _norm(value: Any) -> Any:
    """Labels compare as ints when they are whole numbers, else as stripped strings."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    return str(value).strip()


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int) else (1, str(value))
