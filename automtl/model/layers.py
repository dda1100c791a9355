"""Small serialisable layers used inside models (so SavedModels take raw values)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="automtl")
class NanToZero(keras.layers.Layer):
    """Replace NaN by 0: after normalisation this is mean imputation, in the graph."""

    def call(self, x):
        return keras.ops.where(keras.ops.isnan(x), keras.ops.zeros_like(x), x)


@keras.saving.register_keras_serializable(package="automtl")
class GatedMixture(keras.layers.Layer):
    """``softmax(gate_logits)``-weighted sum of expert outputs: one MMoE gate's view."""

    def call(self, inputs):
        gate, *experts = inputs
        weights = keras.ops.softmax(gate, axis=-1)  # [batch, experts]
        stacked = keras.ops.stack(experts, axis=1)  # [batch, experts, units]
        return keras.ops.sum(stacked * keras.ops.expand_dims(weights, -1), axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape[1]
