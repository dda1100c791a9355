"""The image input's custom Keras layer (registered, so ``model.keras`` loads after importing this)."""

from __future__ import annotations

from typing import Any

import keras

PACKAGE = "automtl_image"


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResizeImages(keras.layers.Layer):
    """Raw images of any size (uint8 or float) -> float images of one size.

    Bilinear with antialiasing, the same interpolation as the ``tf.data``
    pipeline that prepares the training images. (Keras's ``Resizing`` layer
    is a data layer whose graph mode breaks SavedModel export when the model
    also holds a Dropout layer, hence this plain layer.)
    """

    def __init__(self, height: int, width: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)

    def call(self, images: Any) -> Any:
        images = keras.ops.cast(images, self.compute_dtype)
        return keras.ops.image.resize(images, (self.height, self.width), interpolation="bilinear", antialias=True)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width}


@keras.saving.register_keras_serializable(package=PACKAGE)
class GridPool(keras.layers.Layer):
    """A feature map ``[batch, h, w, c]`` -> its means over a ``rows x cols`` grid of regions, flattened
    (``rows * cols * c`` values; a map smaller than the grid repeats its cells).

    Unlike global pooling it keeps where things are (left or right, top or
    bottom), which tasks about one part of a fixed layout need.
    """

    def __init__(self, rows: int = 2, cols: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows, self.cols = int(rows), int(cols)

    @staticmethod
    def _cuts(size: int, parts: int) -> list[tuple[int, int]]:
        return [(min(p * size // parts, size - 1), max(min(p * size // parts, size - 1) + 1, (p + 1) * size // parts))
                for p in range(parts)]

    def call(self, x: Any) -> Any:
        h, w = x.shape[1], x.shape[2]
        cells = [keras.ops.mean(x[:, r0:r1, c0:c1, :], axis=(1, 2))
                 for r0, r1 in self._cuts(h, self.rows) for c0, c1 in self._cuts(w, self.cols)]
        return keras.ops.concatenate(cells, axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.rows * self.cols * input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rows": self.rows, "cols": self.cols}
