"""Keras building bricks shared by the core and plugins (plugins get them through :mod:`automtl.api`).

Light to import: Keras loads when a brick is built.
"""

from __future__ import annotations

from typing import Any


def dense_block(x: Any, units: int, depth: int, dropout: float, l2: float, name: str) -> Any:
    """``depth`` Dense+ReLU layers with dropout and L2: the building brick of trunks and heads."""
    import keras

    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    for i in range(depth):
        x = keras.layers.Dense(units, activation="relu", kernel_regularizer=reg, name=f"{name}_dense{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"{name}_dropout{i}")(x)
    return x
