"""The built-in ``regression`` task: one or several numeric targets per task.

Targets are standardised for training; predictions are returned in the
target's original scale, inside the exported graph.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from automtl.api import DataError, HeadParams, Metric, Options, Table, Targets, Task, as_float, dense_block

#: Validation rows a regression task hands the report per target (a scatter plot, not a table).
DIAGNOSTIC_ROWS = 2000


class RegressionOptions(Options):
    target: str | list[str]


class RegressionTask(Task):
    Options = RegressionOptions
    primary_metric = "rmse"
    direction = "minimize"
    metrics = (
        Metric("rmse", "minimize", "root mean squared error in the target's units (ranked as skill, the same order)"),
        Metric("skill", "maximize", "1 - RMSE / the training standard deviation: skill over predicting the mean"),
        Metric("mae", "minimize", "mean absolute error in the target's units (ranked as 1 - MAE / the training "
               "mean absolute deviation from the median)"),
        Metric("r2", "maximize", "coefficient of determination on the validation rows"),
    )
    chance_label = "the training mean"

    @property
    def columns(self) -> list[str]:
        t = self.options.target
        return [t] if isinstance(t, str) else list(t)

    def _values(self, data: Table) -> np.ndarray:
        cols = [as_float(data, c, needed_by=f"task '{self.name}'") for c in self.columns]
        for c, v in zip(self.columns, cols):
            if v.ndim != 1:
                v.shape = (len(v), -1)  # an NPZ array of several targets
        return np.column_stack(cols)

    def prepare(self, train: Table) -> None:
        values = self._values(train)
        labelled = ~np.isnan(values)
        if not labelled.any(axis=0).all():
            empty = [c for c, ok in zip(self.columns, labelled.any(axis=0)) if not ok]
            raise DataError(f"{train.source}: task '{self.name}': target {empty} has no values")
        self.mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
        self.std = np.where(std > 0, std, 1.0)
        spread = np.nanmean(np.abs(values - np.nanmedian(values, axis=0)), axis=0)
        self.spread = np.where(spread > 0, spread, 1.0)  # the MAE of always predicting the median
        self.width = values.shape[1]

    def targets(self, data: Table) -> Targets:
        values = self._values(data)
        mask = ~np.isnan(values)
        y = np.where(mask, (values - self.mean) / self.std, 0.0).astype(np.float32)
        return Targets(y=y, mask=mask)

    def build_head(self, features: Any, params: HeadParams) -> Any:
        import keras

        x = dense_block(features, params.units, params.depth, params.dropout, params.l2, name="hidden",
                        norm=params.norm)
        return keras.layers.Dense(self.width, name="value")(x)

    def loss(self, y_true: Any, y_pred: Any) -> Any:
        import keras

        return keras.ops.square(y_true - keras.ops.cast(y_pred, "float32"))

    def evaluate(self, y_true: np.ndarray, mask: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        m = mask.astype(bool)
        err = (y_pred - y_true) * self.std  # original scale
        count = m.sum(axis=0)
        mse = np.where(count > 0, (np.where(m, err**2, 0.0)).sum(axis=0) / np.maximum(count, 1), np.nan)
        mae = np.where(count > 0, np.abs(np.where(m, err, 0.0)).sum(axis=0) / np.maximum(count, 1), np.nan)
        rmse = np.sqrt(mse)
        truth = y_true * self.std
        centre = np.where(m, truth, 0.0).sum(axis=0) / np.maximum(count, 1)
        variance = np.where(m, (truth - centre) ** 2, 0.0).sum(axis=0) / np.maximum(count, 1)
        r2 = np.where((count > 0) & (variance > 0), 1.0 - mse / np.where(variance > 0, variance, 1.0), np.nan)
        return {
            "rmse": float(np.nanmean(rmse)),
            "mae": float(np.nanmean(mae)),
            "skill": float(np.nanmean(1.0 - rmse / self.std)),
            "r2": float(np.nanmean(r2)) if np.isfinite(r2).any() else float("nan"),
            "labelled": float(m.any(axis=1).sum()),
        }

    def diagnostics(self, y_true: np.ndarray, mask: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
        """Actual and predicted values in the user's units, per target, on its labelled validation rows
        (the first :data:`DIAGNOSTIC_ROWS`: a plot, not a table)."""
        m = np.asarray(mask).astype(bool)
        m = m if m.ndim == 2 else m[:, None]
        actual, predicted = [], []
        for j in range(len(self.columns)):
            rows = np.flatnonzero(m[:, min(j, m.shape[1] - 1)])[:DIAGNOSTIC_ROWS]
            actual.append((y_true[rows, j] * self.std[j] + self.mean[j]).astype(float).tolist())
            predicted.append((y_pred[rows, j] * self.std[j] + self.mean[j]).astype(float).tolist())
        return {"kind": "values", "targets": list(map(str, self.columns)), "actual": actual, "predicted": predicted}

    def score(self, metrics: Mapping[str, float]) -> float:
        """Comparable with accuracies (0 at chance level, 1 when perfect): skill (1 - RMSE/std) for
        ``rmse`` and ``skill``, 1 - MAE / the training mean absolute deviation for ``mae``, R² itself."""
        if self.primary_metric == "mae":
            return float(1.0 - metrics["mae"] / float(np.mean(getattr(self, "spread", 1.0))))
        if self.primary_metric == "r2":
            return float(metrics["r2"])
        return float(metrics["skill"])

    def member_average(self) -> str:
        return "mean"

    def chance_output(self) -> np.ndarray:
        """The training mean (0 in the standardised scale the head predicts)."""
        return np.zeros(self.width)

    def postprocess(self, raw: Any) -> dict[str, Any]:
        import tensorflow as tf

        value = tf.cast(raw, tf.float32) * tf.constant(self.std, tf.float32) + tf.constant(self.mean, tf.float32)
        return {"value": value[:, 0] if self.width == 1 else value}

    def combine(self, raw_outputs: Any, weights: Any) -> Any:
        """The weighted mean of the members' (standardised) values."""
        import tensorflow as tf

        total = float(sum(weights))
        return tf.add_n([float(w) / total * tf.cast(r, tf.float32) for r, w in zip(raw_outputs, weights)])

    def distill_targets(self, teacher_raw: np.ndarray, temperature: float) -> Targets:
        """The teacher's values (standardised, as the head predicts them); temperature does not apply."""
        soft = teacher_raw.astype(np.float32).reshape(len(teacher_raw), self.width)
        return Targets(y=soft, mask=np.ones_like(soft))

    def distill_loss(self, soft: Any, y_pred: Any, temperature: float) -> Any:
        return self.loss(soft, y_pred)

    def describe(self) -> dict[str, Any]:
        return {"targets": self.columns, "mean": self.mean.tolist(), "std": self.std.tolist()}

