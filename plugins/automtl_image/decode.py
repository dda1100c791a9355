"""Decoding and resizing images in a ``tf.data`` pipeline, with errors that name the record."""

from __future__ import annotations

from typing import Callable

import numpy as np

from automtl.api import DataError

BATCH = 256


def load_files(paths: list[str], channels: int, size: tuple[int, int], where: Callable[[int], str]) -> np.ndarray:
    """Decode PNG/JPEG (and the other formats ``tf.io.decode_image`` reads) files to
    ``uint8 [n, height, width, channels]``. ``where(i)`` names record ``i`` in errors."""
    import tensorflow as tf

    def load(path: tf.Tensor) -> tf.Tensor:
        img = tf.io.decode_image(tf.io.read_file(path), channels=channels, dtype=tf.uint8, expand_animations=False)
        return _resize_uint8(img, size)

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(BATCH).prefetch(2)
    try:
        return _collect(ds, len(paths), size, channels, np.uint8)
    except tf.errors.OpError:
        pass
    for i, path in enumerate(paths):  # find the record that failed, to name it
        try:
            load(tf.constant(path))
        except tf.errors.OpError as exc:
            message = exc.message.splitlines()[0] if exc.message else type(exc).__name__
            raise DataError(f"{where(i)}: cannot read image {path}: {message}") from None
    raise DataError(f"{where(0)}: cannot decode the images (TensorFlow failed on the batch but on no single file)")


def resize_arrays(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """NPZ images ``[n, h, w, c]`` resized (in ``tf.data``) to ``size``; dtype kept (uint8 or float32)."""
    import tensorflow as tf

    if tuple(values.shape[1:3]) == tuple(size):
        return values
    dtype = values.dtype
    ds = tf.data.Dataset.from_tensor_slices(values).batch(BATCH)
    if dtype == np.uint8:
        ds = ds.map(lambda x: _resize_uint8(x, size), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(lambda x: tf.image.resize(x, size, method="bilinear", antialias=True),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _collect(ds.unbatch().batch(BATCH), len(values), size, values.shape[-1], dtype)


def _resize_uint8(img, size: tuple[int, int]):
    """Same interpolation as the model's Resizing layer, rounded back to uint8."""
    import tensorflow as tf

    out = tf.image.resize(img, size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


def _collect(ds, n: int, size: tuple[int, int], channels: int, dtype) -> np.ndarray:
    out = np.empty((n, size[0], size[1], channels), dtype=dtype)
    start = 0
    for batch in ds:
        arr = batch.numpy()
        out[start : start + len(arr)] = arr
        start += len(arr)
    return out
