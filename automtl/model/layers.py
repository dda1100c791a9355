"""Small serialisable layers used inside models (so SavedModels take raw values)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="automtl")
class NanToZero(keras.layers.Layer):
    """Replace NaN by 0: after normalisation this is mean imputation, in the graph."""

    def call(self, x):
        return keras.ops.where(keras.ops.isnan(x), keras.ops.zeros_like(x), x)
