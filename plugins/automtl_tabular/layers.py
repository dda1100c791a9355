"""Keras layers of the tabular input: numeric encodings fitted on the training split.

Each layer holds what it learned from the training rows as non-trainable
weights (so ``model.keras`` and the SavedModel carry them) and takes raw
values, NaN for a missing cell; a missing cell encodes as zeros (the
missing-value indicators say where they were). Imported only when a model is
built.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

PACKAGE = "automtl_tabular"


class _Fitted(keras.layers.Layer):
    """A layer whose fitted arrays are non-trainable weights (restored on load, not stored in the config)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], values: dict[str, np.ndarray] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shapes = {k: tuple(int(d) for d in v) for k, v in shapes.items()}
        self._values = values

    def _fitted(self) -> None:
        for key, shape in self.shapes.items():
            init = "zeros" if self._values is None else keras.initializers.Constant(np.asarray(self._values[key], np.float32))
            setattr(self, key, self.add_weight(shape=shape, initializer=init, trainable=False, name=key))
        self._values = None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "shapes": {k: list(v) for k, v in self.shapes.items()}}


def _fill(x: Any) -> tuple[Any, Any]:
    missing = ops.isnan(x)
    return ops.where(missing, ops.zeros_like(x), x), missing


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantileNormal(_Fitted):
    """Maps each column through its training quantiles to a standard normal score.

    The transform of scikit-learn's ``QuantileTransformer(output_distribution="normal")``:
    interpolated in both directions and averaged, so a value repeated in the
    training data (a discrete feature) maps to the middle of its quantile range.
    """

    def __init__(self, quantiles: np.ndarray | None = None, shapes: dict | None = None, **kwargs: Any) -> None:
        shapes = shapes or {"quantiles": tuple(np.shape(quantiles)[::-1])}  # stored [features, levels]
        values = None if quantiles is None else {"quantiles": np.asarray(quantiles, np.float32).T}
        super().__init__(shapes, values, **kwargs)

    def build(self, input_shape: Any) -> None:
        self._fitted()

    def call(self, x: Any) -> Any:
        x, missing = _fill(ops.cast(x, "float32"))
        q = self.quantiles  # [d, n]
        n = q.shape[-1]
        levels = ops.linspace(0.0, 1.0, n)
        cols = ops.transpose(x)  # [d, batch]
        up = _interp(cols, q, levels)
        down = 1.0 - _interp(-cols, -ops.flip(q, axis=-1), levels)
        p = ops.clip(0.5 * (up + down), 1e-7, 1.0 - 1e-7)
        z = math.sqrt(2.0) * _erfinv(2.0 * p - 1.0)
        z = ops.transpose(z)
        return ops.cast(ops.where(missing, ops.zeros_like(z), z), self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape


def _erfinv(x: Any) -> Any:
    import tensorflow as tf

    return tf.math.erfinv(x)


def _interp(x: Any, xp: Any, fp: Any) -> Any:
    """Row-wise linear interpolation: ``x`` [d, b] on ascending knots ``xp`` [d, n] with values ``fp`` [n]."""
    import tensorflow as tf

    n = xp.shape[-1]
    idx = tf.clip_by_value(tf.searchsorted(xp, x, side="right"), 1, n - 1)
    x0, x1 = tf.gather(xp, idx - 1, batch_dims=1), tf.gather(xp, idx, batch_dims=1)
    f0, f1 = tf.gather(fp, idx - 1), tf.gather(fp, idx)
    width = x1 - x0
    t = tf.where(width > 0, (x - x0) / tf.where(width > 0, width, 1.0), tf.ones_like(x))
    return f0 + tf.clip_by_value(t, 0.0, 1.0) * (f1 - f0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PiecewiseLinear(_Fitted):
    """Piecewise-linear encoding (Gorishniy et al. 2022, "PLE-Q"): ``bins`` values per column.

    With bin edges ``b_0 < ... < b_T`` from training quantiles, component ``t``
    is 0 below its bin, 1 above it and linear inside it; a column with fewer
    distinct edges than bins leaves its spare components at 0.
    """

    def __init__(self, edges: np.ndarray | None = None, shapes: dict | None = None, **kwargs: Any) -> None:
        if edges is not None:
            left, width = edges[:, :-1], np.diff(edges, axis=1)
            values = {"left": left, "width": width}
            shapes = {"left": left.shape, "width": width.shape}
        else:
            values = None
        super().__init__(shapes, values, **kwargs)

    def build(self, input_shape: Any) -> None:
        self._fitted()

    def call(self, x: Any) -> Any:
        x, missing = _fill(ops.cast(x, "float32"))
        x = x[..., None]  # [b, d, 1]
        used = ops.cast(self.width > 0, "float32")
        t = (x - self.left) / ops.where(self.width > 0, self.width, ops.ones_like(self.width))
        e = ops.clip(t, 0.0, 1.0) * used
        e = ops.where(missing[..., None], ops.zeros_like(e), e)
        return ops.cast(ops.reshape(e, (-1, self.shapes["left"][0] * self.shapes["left"][1])), self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.shapes["left"][0] * self.shapes["left"][1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class PeriodicEmbedding(keras.layers.Layer):
    """Learned periodic embeddings, then a linear layer and ReLU per column ("PLR", Gorishniy et al. 2022).

    Input: standardised columns ``[b, d]`` (zeros where missing). Column ``j``
    becomes ``ReLU(W_j [cos(2 pi c_j x), sin(2 pi c_j x)] + b_j)`` with
    ``frequencies`` trainable ``c_j`` drawn from N(0, sigma) and ``dim`` outputs.
    """

    def __init__(self, frequencies: int, sigma: float, dim: int, seed: int | None = None, l2: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.frequencies, self.sigma, self.dim, self.seed, self.l2 = int(frequencies), float(sigma), int(dim), seed, float(l2)

    def build(self, input_shape: tuple) -> None:
        d, k = int(input_shape[-1]), self.frequencies
        reg = keras.regularizers.L2(self.l2) if self.l2 > 0 else None
        self.coefficients = self.add_weight(shape=(d, k), name="coefficients", initializer=keras.initializers.RandomNormal(
            stddev=self.sigma, seed=self.seed))
        limit = 1.0 / math.sqrt(2 * k)
        self.kernel = self.add_weight(shape=(d, 2 * k, self.dim), name="kernel", regularizer=reg,
                                      initializer=keras.initializers.RandomUniform(-limit, limit, seed=self.seed))
        self.bias = self.add_weight(shape=(d, self.dim), name="bias", initializer=keras.initializers.RandomUniform(
            -limit, limit, seed=self.seed))

    def call(self, x: Any) -> Any:
        v = 2.0 * math.pi * ops.cast(x, self.compute_dtype)[..., None] * self.coefficients  # [b, d, k]
        periodic = ops.concatenate([ops.cos(v), ops.sin(v)], axis=-1)  # [b, d, 2k]
        out = ops.relu(ops.einsum("bdk,dkm->bdm", periodic, self.kernel) + self.bias)
        return ops.reshape(out, (-1, self.kernel.shape[0] * self.dim))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], int(input_shape[-1]) * self.dim)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "frequencies": self.frequencies, "sigma": self.sigma, "dim": self.dim,
                "seed": self.seed, "l2": self.l2}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SmoothClip(keras.layers.Layer):
    """``x / sqrt(1 + (x / 3)^2)``: the identity near 0, tending to +-3 for outliers (RealMLP's
    smooth clipping, Holzmueller et al. 2024), so a heavy tail cannot dominate the first layer."""

    def call(self, x: Any) -> Any:
        x = ops.cast(x, self.compute_dtype)
        return x / ops.sqrt(1.0 + ops.square(x / 3.0))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape


@keras.saving.register_keras_serializable(package=PACKAGE)
class MissingIndicator(keras.layers.Layer):
    """1.0 where a listed column is missing (NaN): one indicator per column that had gaps in training."""

    def __init__(self, columns: list[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.columns = [int(c) for c in columns]

    def call(self, x: Any) -> Any:
        picked = ops.take(x, self.columns, axis=-1)
        return ops.cast(ops.isnan(picked), self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], len(self.columns))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "columns": self.columns}
