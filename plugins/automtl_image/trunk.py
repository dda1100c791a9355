"""The small convolutional trunk trained from scratch (``image.backbone: conv``), as copyable blocks.

Each stage is one block (a fresh ``keras.Sequential`` per call), so a
sharing scheme can build a stage once for every task, once per task, or
once per expert.
"""

from __future__ import annotations

from typing import Any


def conv_stage(filters: int, l2: float, name: str) -> Any:
    """3x3 convolution, batch normalisation, ReLU and 2x2 max pooling: halves the map, ``filters`` channels."""
    import keras

    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    return keras.Sequential([
        keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=reg, name=f"{name}_conv"),
        keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn"),
        keras.layers.ReLU(name=f"{name}_relu"),
        keras.layers.MaxPooling2D(2, name=f"{name}_pool"),
    ], name=name)


POOLS = ("global", "grid")


def pooled(x: Any, name: str, pool: str = "global") -> Any:
    """The trunk's vector view: global average and max pooling, concatenated; with ``pool: grid`` also
    the means over a 2x2 grid of the map's regions (so the heads know where things are)."""
    import keras

    from .layers import GridPool

    if pool not in POOLS:
        raise ValueError(f"unknown image.pool '{pool}'; expected one of {', '.join(POOLS)}")
    parts = [keras.layers.GlobalAveragePooling2D(name=f"{name}_avg")(x),
             keras.layers.GlobalMaxPooling2D(name=f"{name}_max")(x)]
    if pool == "grid":
        parts.append(GridPool(2, 2, name=f"{name}_grid")(x))
    return keras.layers.Concatenate(name=f"{name}_pooled")(parts)


def image_views(name: str, pool: str, x: Any, suffix: str) -> dict[str, Any]:
    """The last map (``spatial``, for detection) and its pooled ``vector``."""
    return {"spatial": x, "vector": pooled(x, name + suffix, pool)}
