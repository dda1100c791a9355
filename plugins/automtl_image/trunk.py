"""The small convolutional trunk trained from scratch (``image.backbone: conv``).

Built block by block in a loop, so the same blocks can be instantiated again
(per task) by a sharing scheme that copies encoder layers.
"""

from __future__ import annotations

from typing import Any


def conv_block(x: Any, filters: int, reg: Any, name: str) -> Any:
    """3x3 convolution, batch normalisation, ReLU and 2x2 max pooling: halves the map, ``filters`` channels."""
    import keras

    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=reg, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def conv_trunk(x: Any, stages: int, filters: int, l2: float, name: str) -> list[Any]:
    """``stages`` blocks, the width doubling per block; returns every block's feature map (stride 2, 4, ...)."""
    import keras

    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    maps = []
    for s in range(stages):
        x = conv_block(x, filters * 2**s, reg, f"{name}_stage{s}")
        maps.append(x)
    return maps


def pooled(x: Any, name: str) -> Any:
    """Global average and max pooling, concatenated: the trunk's vector view."""
    import keras

    return keras.layers.Concatenate(name=f"{name}_pooled")([
        keras.layers.GlobalAveragePooling2D(name=f"{name}_avg")(x),
        keras.layers.GlobalMaxPooling2D(name=f"{name}_max")(x),
    ])
