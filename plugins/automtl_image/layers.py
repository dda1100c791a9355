"""The image input's custom Keras layer (registered, so ``model.keras`` loads after importing this)."""

from __future__ import annotations

from typing import Any

import keras

PACKAGE = "automtl_image"


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResizeImages(keras.layers.Layer):
    """Raw images of any size (uint8 or float) -> float images of one size.

    Bilinear with antialiasing, the same interpolation as the ``tf.data``
    pipeline that prepares the training images (``antialias=False`` for an
    upscale, where both agree and plain bilinear converts to ONNX and LiteRT). (Keras's ``Resizing`` layer
    is a data layer whose graph mode breaks SavedModel export when the model
    also holds a Dropout layer, hence this plain layer.)
    """

    def __init__(self, height: int, width: int, antialias: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)
        self.antialias = bool(antialias)

    def call(self, images: Any) -> Any:
        images = keras.ops.cast(images, self.compute_dtype)
        h, w = images.shape[1], images.shape[2]
        if (h, w) == (self.height, self.width):  # training batches, already resized by the data pipeline
            return images
        if h is not None and w is not None:
            return self._resize(images)
        import tensorflow as tf  # a serving batch of unknown size: resize only when it differs

        shape = tf.shape(images)
        same = tf.logical_and(tf.equal(shape[1], self.height), tf.equal(shape[2], self.width))
        out = tf.cond(same, lambda: images, lambda: self._resize(images))
        out.set_shape([None, self.height, self.width, images.shape[-1]])
        return out

    def _resize(self, images: Any) -> Any:
        out = keras.ops.image.resize(images, (self.height, self.width), interpolation="bilinear", antialias=self.antialias)
        return keras.ops.cast(out, images.dtype)  # TensorFlow resizes to float32 whatever comes in

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width, "antialias": self.antialias}


#: ImageNet channel means (BGR) that "caffe"-style backbones (ResNet50) subtract.
CAFFE_MEANS_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package=PACKAGE)
class BackbonePixels(keras.layers.Layer):
    """Images -> the pixels a pretrained backbone expects, inside the model (so a SavedModel takes raw images).

    Grey images are repeated to three channels; ``scale`` brings the pixels to
    0..255 (255 for float images in [0, 1]); ``mode`` is the backbone's own
    convention: ``internal`` (0..255 RGB: the backbone rescales itself),
    ``tf`` ([-1, 1]) or ``caffe`` (BGR minus the ImageNet means).
    """

    def __init__(self, mode: str, scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("internal", "tf", "caffe"):
            raise ValueError(f"unknown backbone pixel mode '{mode}'")
        self.mode, self.scale = mode, float(scale)

    def call(self, images: Any) -> Any:
        x = keras.ops.cast(images, self.compute_dtype)
        if x.shape[-1] == 1:
            x = keras.ops.repeat(x, 3, axis=-1)
        if self.scale != 1.0:
            x = x * self.scale
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            means = keras.ops.convert_to_tensor(CAFFE_MEANS_BGR, dtype=x.dtype)
            return keras.ops.flip(x, axis=-1) - means
        return x

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], 3)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode, "scale": self.scale}


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
