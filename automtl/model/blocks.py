"""Keras building bricks shared by the core and plugins (plugins get them through :mod:`automtl.api`).

Light to import: Keras loads when a brick is built.
"""

from __future__ import annotations

from typing import Any


NORMS = ("none", "batch", "layer")


def dense_block(x: Any, units: int, depth: int, dropout: float, l2: float, name: str, norm: str = "none") -> Any:
    """``depth`` Dense(+norm)+ReLU layers with dropout and L2: the building brick of trunks and heads.

    ``norm``: "batch" or "layer" normalisation between each Dense and its ReLU
    (the Dense then has no bias, which the normalisation would cancel), or "none".
    """
    import keras

    if norm not in NORMS:
        raise ValueError(f"unknown norm '{norm}'; expected one of {', '.join(NORMS)}")
    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    for i in range(depth):
        if norm == "none":
            x = keras.layers.Dense(units, activation="relu", kernel_regularizer=reg, name=f"{name}_dense{i}")(x)
        else:
            x = keras.layers.Dense(units, use_bias=False, kernel_regularizer=reg, name=f"{name}_dense{i}")(x)
            if norm == "batch":
                x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
            else:
                x = keras.layers.LayerNormalization(name=f"{name}_ln{i}")(x)
            x = keras.layers.ReLU(name=f"{name}_relu{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"{name}_dropout{i}")(x)
    return x
