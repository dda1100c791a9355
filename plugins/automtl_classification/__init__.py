"""The built-in ``classification`` task: binary, multi-class and multi-label.

Labels may be strings or integers. Multi-label targets are either several
0/1 columns (``target: [a, b, c]``) or one column of separator-joined labels
(``multilabel: true``).
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Mapping

import numpy as np
import pandas as pd

import pydantic

from automtl.api import (ConfigError, DataError, HeadParams, Metric, Options, Table, Targets, Task, TrialParams,
                         as_float, dense_block, is_missing, ParamSpec)

from automtl_classification import metrics as cm

log = logging.getLogger("automtl")


class ClassificationOptions(Options):
    target: str | list[str]
    multilabel: bool = False
    separator: str = "|"
    classes: list[str | int] | None = None
    label_smoothing: float = pydantic.Field(0.0, ge=0.0, lt=1.0, description="share of each target spread over all classes")
    class_weight: Literal["balanced"] | dict[str | int, pydantic.PositiveFloat] | None = pydantic.Field(
        None, description="weights of the classes in the loss: balanced (n / (classes x count)) or a mapping "
        "class: weight (classes not named weigh 1); single-label only")


class ClassificationTask(Task):
    Options = ClassificationOptions
    primary_metric = "accuracy"
    direction = "maximize"
    tiebreak_metric = "log_loss"  # every mode reports it
    metrics = cm.SINGLE
    chance_label = "the class frequencies (always the majority class)"
    #: ``label_smoothing`` (global, or per task as ``label_smoothing.<task>``) overrides the option.
    parameters = {"label_smoothing": ParamSpec("label_smoothing", 0.0, low=0.0, high=1.0, high_open=True, per_task=True,
                                               doc="share of each target spread over the classes")}

    def __init__(self, name: str, options: Any = None) -> None:
        super().__init__(name, options)
        self.mode = "multilabel" if (self.options.multilabel or isinstance(self.options.target, list)) else "single"
        if self.mode == "multilabel":
            self.primary_metric = "f1_micro"
            if self.options.class_weight is not None:
                raise ConfigError(f"task '{name}': option 'class_weight' applies to single-label classification; "
                                  "a multi-label task weighs every label alike")
        self.smoothing = float(self.options.label_smoothing)

    def available_metrics(self) -> tuple[Metric, ...]:
        return cm.MULTILABEL if self.mode == "multilabel" else cm.SINGLE

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
        self._learn_frequencies(train)

    def _learn_frequencies(self, train: Table) -> None:
        """Class frequencies (each label's positive rate when multi-label) of the labelled training rows:
        the chance-level reference, the scale of the log-loss score and the balanced class weights."""
        t = self.targets(train)
        m = t.mask.reshape(len(t.mask), -1).astype(bool)
        if self.mode == "multilabel":
            rows = m.all(axis=1)
            self.frequencies = t.y[rows].mean(axis=0) if rows.any() else np.full(len(self.classes), 0.5)
            self.prior_log_loss = cm.entropy(self.frequencies, multilabel_rates=True)
            self.class_weights = None
            return
        ids = np.asarray(t.y).reshape(len(t.y)).astype(np.int64)[m[:, 0]]
        counts = np.bincount(ids, minlength=len(self.classes)).astype(np.float64)
        self.frequencies = counts / max(1.0, counts.sum())
        self.prior_log_loss = cm.entropy(self.frequencies)
        self.class_weights = self._class_weights(counts, train)

    def _class_weights(self, counts: np.ndarray, train: Table) -> np.ndarray | None:
        option = self.options.class_weight
        if option is None:
            return None
        if option == "balanced":  # scikit-learn's rule: n / (classes x count); a class absent in training weighs 1
            return np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1.0)), 1.0)
        weights = np.ones(len(self.classes))
        for key, value in option.items():
            index = self.index.get(_norm(key))
            if index is None:
                raise DataError(f"{train.source}: {self._owner()} option 'class_weight' names class {key!r}, which "
                                f"is not one of its classes {self.classes}")
            weights[index] = float(value)
        return weights

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
        labelled = np.flatnonzero(mask)
        # each distinct label looked up once (values equal as numbers, like 1 and 1.0, normalise alike)
        codes, distinct = pd.factorize(col[labelled], use_na_sentinel=False)
        lookup = np.array([self.index.get(_norm(v), -1) for v in distinct], np.int64)
        found = lookup[codes] if len(codes) else np.zeros(0, np.int64)
        ids[labelled] = np.maximum(found, 0)
        mask[labelled[found < 0]] = False
        unknown = int((found < 0).sum())
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

        loss = self._unweighted_loss(y_true, y_pred)
        weights = getattr(self, "class_weights", None)
        if weights is None:
            return loss
        ops = keras.ops
        ids = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        return loss * ops.take(ops.convert_to_tensor(weights.astype(np.float32)), ids)

    def _unweighted_loss(self, y_true: Any, y_pred: Any) -> Any:
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
            return {**cm.multilabel(probs, y), "labelled": float(m.sum())}
        if self.binary:
            probs = np.concatenate([1.0 - probs, probs], axis=1)
            y = y[:, 0]
        return {**cm.single_label(probs, np.asarray(y).astype(np.int64)), "labelled": float(m.sum())}

    def diagnostics(self, y_true: np.ndarray, mask: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
        """Per-class precision and recall on the labelled validation rows, and the confusion matrix
        (rows: true class, columns: predicted; single-label tasks)."""
        m = mask.astype(bool)
        if not m.any():
            return {}
        probs, y = self._probs(y_pred[m]), np.asarray(y_true[m])
        if self.mode == "multilabel":
            hit, truth = probs >= 0.5, y.astype(bool)
            tp = (hit & truth).sum(axis=0)
            return {"kind": "classes", "classes": list(self.classes),
                    "precision": _ratios(tp, hit.sum(axis=0)), "recall": _ratios(tp, truth.sum(axis=0))}
        if self.binary:
            probs, y = np.concatenate([1.0 - probs, probs], axis=1), y[:, 0]
        k = probs.shape[1]
        confusion = np.zeros((k, k), dtype=np.int64)
        np.add.at(confusion, (np.asarray(y).astype(np.int64), probs.argmax(axis=1)), 1)
        right = np.diag(confusion)
        names = list(self.classes) if len(self.classes) == k else [str(i) for i in range(k)]
        return {"kind": "classes", "classes": names, "confusion": confusion.tolist(),
                "precision": _ratios(right, confusion.sum(axis=0)), "recall": _ratios(right, confusion.sum(axis=1))}

    def score(self, metrics: Mapping[str, float]) -> float:
        """The chosen metric, higher is better; log loss as skill over the training class frequencies
        (1 - log_loss / their entropy: 0 at chance level, 1 when perfect), comparable with accuracies."""
        value = float(metrics[self.primary_metric])
        if self.primary_metric == "log_loss":
            return 1.0 - value / max(getattr(self, "prior_log_loss", 1.0), 1e-6)
        return value if self.direction == "maximize" else -value

    def member_average(self) -> str:
        """TabM members average their probabilities, as an ensemble does (see :meth:`combine`)."""
        return "sigmoid" if self._sigmoid_out() else "softmax"

    def chance_output(self) -> np.ndarray:
        """The training class frequencies as logits: their argmax is the majority class."""
        p = np.clip(self.frequencies, 1e-7, 1 - 1e-7)
        if self.mode == "multilabel" or self.binary:
            return (np.log(p) - np.log1p(-p))[-1:] if self.binary else np.log(p) - np.log1p(-p)
        return np.log(p)

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
            # log(1 - p), not log1p(-p): exact here (1 - p is exact for p >= 0.5), and tf2onnx has no Log1p,
            # so an ensemble converts to ONNX
            return tf.math.log(p) - tf.math.log(1.0 - p)
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
        classes = [c if isinstance(c, int) else str(c) for c in self.classes]
        # `automtl predict` writes the probabilities as one column per class, <task>.p.<class>
        return {"mode": mode, "classes": classes,
                "output_columns": {"probabilities": {"prefix": "p", "names": [str(c) for c in classes]}}}


def _norm(value: Any) -> Any:
    """Labels compare as ints when they are whole numbers, else as stripped strings."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    return str(value).strip()


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int) else (1, str(value))


def _ratios(part: np.ndarray, whole: np.ndarray) -> list[float | None]:
    """``part / whole`` per class; None where ``whole`` is 0 (no row predicted, or none labelled, as that class)."""
    return [float(a) / float(b) if b else None for a, b in zip(part, whole)]
