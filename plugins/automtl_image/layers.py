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
