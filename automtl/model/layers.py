"""Small serialisable layers used inside models (so SavedModels take raw values)."""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="automtl")
class NanToZero(keras.layers.Layer):
    """Replace NaN by 0: after normalisation this is mean imputation, in the graph."""

    def call(self, x):
        return keras.ops.where(keras.ops.isnan(x), keras.ops.zeros_like(x), x)


@keras.saving.register_keras_serializable(package="automtl")
class GatedMixture(keras.layers.Layer):
    """``softmax(gate_logits)``-weighted sum of expert outputs of any rank: one MMoE/PLE gate's view."""

    def call(self, inputs):
        gate, *experts = inputs
        stacked = keras.ops.stack(experts, axis=1)  # [batch, experts, ...]
        weights = keras.ops.cast(keras.ops.softmax(gate, axis=-1), stacked.dtype)  # [batch, experts]
        weights = keras.ops.reshape(weights, (-1, len(experts)) + (1,) * (len(stacked.shape) - 2))
        return keras.ops.sum(stacked * weights, axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape[1]


@keras.saving.register_keras_serializable(package="automtl")
class GlobalSummary(keras.layers.Layer):
    """Tensors ``[batch, ..., channels]`` -> their means over the positions, concatenated (a gate's input)."""

    def call(self, inputs):
        parts = [t if len(t.shape) == 2 else keras.ops.mean(t, axis=tuple(range(1, len(t.shape) - 1)))
                 for t in inputs]
        parts = [keras.ops.cast(p, self.compute_dtype) for p in parts]
        return parts[0] if len(parts) == 1 else keras.ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], sum(s[-1] for s in input_shape))


@keras.saving.register_keras_serializable(package="automtl")
class CrossStitch(keras.layers.Layer):
    """A cross-stitch unit (Misra et al., 2016): task ``t``'s output is ``sum_s alpha[t, s] * x_s``.

    ``alpha`` starts near the identity (``self_weight`` on the diagonal, the
    rest shared equally among the other tasks) and is learned.
    """

    def __init__(self, self_weight: float = 0.9, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.self_weight = float(self_weight)

    def build(self, input_shape):
        n = len(input_shape)
        other = (1.0 - self.self_weight) / (n - 1) if n > 1 else 0.0
        init = [[self.self_weight if i == j else other for j in range(n)] for i in range(n)] if n > 1 else [[1.0]]
        self.alpha = self.add_weight(shape=(n, n), initializer=keras.initializers.Constant(init), name="alpha")

    def call(self, inputs):
        stacked = keras.ops.stack(inputs, axis=0)  # [tasks, batch, ...]
        alpha = keras.ops.cast(self.alpha, stacked.dtype)
        mixed = keras.ops.tensordot(alpha, stacked, axes=[[1], [0]])
        return [mixed[i] for i in range(len(inputs))]

    def compute_output_shape(self, input_shape):
        return list(input_shape)

    def get_config(self):
        return {**super().get_config(), "self_weight": self.self_weight}


class _Untracked:
    """Holds variables a layer reads without owning them (Keras tracks lists, layers and variables it is given)."""

    def __init__(self, groups: list[list[Any]]) -> None:
        self.groups = groups


@keras.saving.register_keras_serializable(package="automtl")
class SoftTie(keras.layers.Layer):
    """Soft parameter sharing's pull: passes its input through and adds the training loss
    ``strength * sum over pairs of copies ||W_a - W_b||^2`` over corresponding kernels.

    The copies' kernels are given with :meth:`tie`; the layer reads them and
    owns none, so each copy stays on its own task's path (alternating training
    then moves only the trained task's copy: it pays the terms of its own
    kernels). A model loaded from a file has no ties: serving needs none.
    """

    def __init__(self, strength: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.strength = float(strength)
        self._ties = _Untracked([])

    def tie(self, groups: list[list[Any]]) -> None:
        """Each group lists one kernel of every copy (same shape), in the same order."""
        self._ties = _Untracked([list(g) for g in groups if len(g) > 1])

    def penalty(self) -> Any:
        total = keras.ops.zeros(())
        for group in self._ties.groups:
            for a in range(len(group)):
                for b in range(a + 1, len(group)):
                    diff = keras.ops.cast(group[a], "float32") - keras.ops.cast(group[b], "float32")
                    total = total + keras.ops.sum(keras.ops.square(diff))
        return self.strength * total

    def call(self, x):
        if self._ties.groups and self.strength > 0:
            self.add_loss(self.penalty())
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "strength": self.strength}


@keras.saving.register_keras_serializable(package="automtl")
class DenseLevel(keras.layers.Layer):
    """One dense trunk layer: Dense (+ batch or layer norm) + ReLU (with L2), then dropout; one copyable
    level of the trunk (``norm`` as in :func:`automtl.model.blocks.dense_block`)."""

    def __init__(self, units: int, dropout: float = 0.0, l2: float = 0.0, norm: str = "none", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from automtl.model.blocks import NORMS

        if norm not in NORMS:
            raise ValueError(f"unknown norm '{norm}'; expected one of {', '.join(NORMS)}")
        self.units, self.rate, self.l2, self.norm_kind = int(units), float(dropout), float(l2), norm
        reg = keras.regularizers.L2(self.l2) if self.l2 > 0 else None
        plain = norm == "none"  # a normalisation cancels the bias and comes before the ReLU
        self.dense = keras.layers.Dense(self.units, activation="relu" if plain else None, use_bias=plain,
                                        kernel_regularizer=reg, name="dense")
        self.norm = (None if plain else keras.layers.BatchNormalization(momentum=0.9, name="bn") if norm == "batch"
                     else keras.layers.LayerNormalization(name="ln"))
        self.dropout = keras.layers.Dropout(self.rate, name="dropout") if self.rate > 0 else None

    def build(self, input_shape):
        self.dense.build(input_shape)
        if self.norm is not None:
            self.norm.build((*input_shape[:-1], self.units))

    @property
    def kernel(self):
        return self.dense.kernel

    def call(self, x, training=None):
        x = self.dense(x)
        if self.norm is not None:
            x = keras.ops.relu(self.norm(x, training=training))
        return self.dropout(x, training=training) if self.dropout is not None else x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "dropout": self.rate, "l2": self.l2,
                "norm": self.norm_kind}
