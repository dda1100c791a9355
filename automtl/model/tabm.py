"""TabM (Gorishniy et al., ICLR 2025): k members that share the dense trunk's weights.

Each dense level holds one kernel ``W`` for all members and, per member ``i``,
BatchEnsemble adapters: ``y_i = relu(((x_i * r_i) W) * s_i + b_i)``. The
first level turns the ``[batch, d]`` vector into ``[batch, k, d]`` (every
member sees the same row) and its ``r`` starts at random signs, so that the
members differ from the first step; every other adapter starts at ones. Each
task's head runs on every member's features through an input adapter of its
own (one more ``r``), giving ``[batch, k, out]``; the members train on the
mean of their losses (:func:`automtl.training.losses.task_loss`) and the
model's output is their average (:class:`MemberAverage`, as the task declares
with :meth:`automtl.api.Task.member_average`), so the exported model serves
one prediction per task, like any other.
"""

from __future__ import annotations

from typing import Any

import keras

from automtl.model.blocks import NORMS
from automtl.model.keys import MEMBERS  # noqa: F401  (re-exported: assemble reads it here)

#: How member predictions average (see :meth:`automtl.api.Task.member_average`).
AVERAGES = ("mean", "softmax", "sigmoid")


def _signs(seed: int | None) -> Any:
    def init(shape: Any, dtype: Any = None) -> Any:
        u = keras.random.uniform(shape, seed=seed)
        return keras.ops.cast(keras.ops.where(u < 0.5, -1.0, 1.0), dtype or "float32")

    return init


def _adapter_init(first: bool, seed: int | None) -> Any:
    return _signs(seed) if first else "ones"


@keras.saving.register_keras_serializable(package="automtl")
class EnsembleDense(keras.layers.Layer):
    """One TabM level: a dense block (+ batch or layer norm) + ReLU, then dropout, whose ``k`` members
    share the kernel and each scale its input and output and add its own bias. Takes ``[batch, d]``
    (the first level: every member gets the row) or ``[batch, k, d]``; returns ``[batch, k, units]``."""

    def __init__(self, units: int, k: int, dropout: float = 0.0, l2: float = 0.0, norm: str = "none",
                 first: bool = False, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if norm not in NORMS:
            raise ValueError(f"unknown norm '{norm}'; expected one of {', '.join(NORMS)}")
        self.units, self.k, self.rate, self.l2, self.norm_kind = int(units), int(k), float(dropout), float(l2), norm
        self.first, self.seed = bool(first), seed
        self.norm = (None if norm == "none" else keras.layers.BatchNormalization(momentum=0.9, name="bn")
                     if norm == "batch" else keras.layers.LayerNormalization(name="ln"))
        self.dropout = keras.layers.Dropout(self.rate, name="dropout") if self.rate > 0 else None

    def build(self, input_shape: Any) -> None:
        d = int(input_shape[-1])
        reg = keras.regularizers.L2(self.l2) if self.l2 > 0 else None
        self.kernel = self.add_weight(name="kernel", shape=(d, self.units), initializer="glorot_uniform",
                                      regularizer=reg)
        self.r = self.add_weight(name="r", shape=(self.k, d), initializer=_adapter_init(self.first, self.seed))
        self.s = self.add_weight(name="s", shape=(self.k, self.units), initializer="ones")
        self.bias = self.add_weight(name="bias", shape=(self.k, self.units), initializer="zeros")
        if self.norm is not None:
            self.norm.build((None, self.k, self.units))

    def call(self, x: Any, training: Any = None) -> Any:
        ops = keras.ops
        if len(x.shape) == 2:
            x = ops.expand_dims(x, 1)  # [batch, 1, d]: broadcast to the k members by the adapter
        x = x * ops.cast(self.r, x.dtype)
        y = ops.einsum("bkd,du->bku", x, ops.cast(self.kernel, x.dtype))
        y = y * ops.cast(self.s, y.dtype) + ops.cast(self.bias, y.dtype)
        if self.norm is not None:
            y = self.norm(y, training=training)
        y = ops.relu(y)
        return self.dropout(y, training=training) if self.dropout is not None else y

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0], self.k, self.units)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "k": self.k, "dropout": self.rate, "l2": self.l2,
                "norm": self.norm_kind, "first": self.first, "seed": self.seed}


@keras.saving.register_keras_serializable(package="automtl")
class MemberAdapter(keras.layers.Layer):
    """A head's input adapter: member ``i``'s features times its own ``r_i``, so that the head's
    shared dense weights act as k heads (BatchEnsemble). ``[batch, d]`` (a trunk without dense
    levels) or ``[batch, k, d]`` -> ``[batch, k, d]``."""

    def __init__(self, k: int, first: bool = False, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.k, self.first, self.seed = int(k), bool(first), seed

    def build(self, input_shape: Any) -> None:
        self.r = self.add_weight(name="r", shape=(self.k, int(input_shape[-1])),
                                 initializer=_adapter_init(self.first, self.seed))

    def call(self, x: Any) -> Any:
        if len(x.shape) == 2:
            x = keras.ops.expand_dims(x, 1)
        return x * keras.ops.cast(self.r, x.dtype)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0], self.k, input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "k": self.k, "first": self.first, "seed": self.seed}


@keras.saving.register_keras_serializable(package="automtl")
class MemberAverage(keras.layers.Layer):
    """The members' raw outputs ``[batch, k, ...]`` -> one raw output: their mean (``mean``), or the
    log of their mean softmax probabilities (``softmax``), or the logit of their mean sigmoid
    probabilities (``sigmoid``): softmax or sigmoid of the result gives back the mean probability."""

    def __init__(self, how: str = "mean", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if how not in AVERAGES:
            raise ValueError(f"unknown member average '{how}'; expected one of {', '.join(AVERAGES)}")
        self.how = how

    def call(self, members: Any) -> Any:
        ops = keras.ops
        members = ops.cast(members, "float32")
        if self.how == "mean":
            return ops.mean(members, axis=1)
        if self.how == "softmax":
            return ops.log(ops.maximum(ops.mean(ops.softmax(members, axis=-1), axis=1), 1e-12))
        p = ops.clip(ops.mean(ops.sigmoid(members), axis=1), 1e-7, 1.0 - 1e-7)
        return ops.log(p) - ops.log1p(-p)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0], *input_shape[2:])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "how": self.how}
