"""In-graph training-time augmentation that moves box targets with their image.

Boxes follow the layout of ``automtl.api.Task.box_targets``: ``[b, k, 5]``
float32, normalised ``xmin, ymin, xmax, ymax`` then the class id, -1 for
padding rows.
"""

from __future__ import annotations

from typing import Any

#: A box cut by a shift is dropped (turned into padding) when less than this share of it stays in the image.
MIN_VISIBLE = 0.5


def flip_horizontal(images: Any, boxes: list[Any], flip: Any) -> tuple[Any, list[Any]]:
    """Mirror the images where ``flip`` (bool ``[b]``) is true, and their boxes with them."""
    import tensorflow as tf

    images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
    moved = []
    for b in boxes:
        x0, y0, x1, y1, cls = tf.unstack(b, axis=-1)
        mirrored = tf.stack([1.0 - x1, y0, 1.0 - x0, y1, cls], axis=-1)
        keep = flip[:, None, None] & (cls >= 0)[..., None]
        moved.append(tf.where(keep, mirrored, b))
    return images, moved


def translate(images: Any, boxes: list[Any], dx: Any, dy: Any) -> tuple[Any, list[Any]]:
    """Shift each image by whole pixels ``dx``, ``dy`` (int ``[b]``; zeros fill in), boxes too.

    Boxes are clipped to the image; one that keeps less than ``MIN_VISIBLE`` of its
    area becomes padding (class -1), so it is no longer a target.
    """
    import tensorflow as tf

    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    fx, fy = tf.cast(dx, tf.float32), tf.cast(dy, tf.float32)
    zeros, ones = tf.zeros_like(fx), tf.ones_like(fx)
    # The transform maps each output pixel to the input pixel it reads from.
    transforms = tf.stack([ones, zeros, -fx, zeros, ones, -fy, zeros, zeros], axis=1)
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.stack([height, width]),
        fill_value=0.0, interpolation="NEAREST", fill_mode="CONSTANT",
    )
    sx = (fx / tf.cast(width, tf.float32))[:, None]
    sy = (fy / tf.cast(height, tf.float32))[:, None]
    moved = []
    for b in boxes:
        x0, y0, x1, y1, cls = tf.unstack(b, axis=-1)
        area = (x1 - x0) * (y1 - y0)
        nx0, nx1 = tf.clip_by_value(x0 + sx, 0.0, 1.0), tf.clip_by_value(x1 + sx, 0.0, 1.0)
        ny0, ny1 = tf.clip_by_value(y0 + sy, 0.0, 1.0), tf.clip_by_value(y1 + sy, 0.0, 1.0)
        visible = (nx1 - nx0) * (ny1 - ny0)
        keep = (cls >= 0) & (visible >= MIN_VISIBLE * area) & (visible > 0)
        shifted = tf.stack([nx0, ny0, nx1, ny1, cls], axis=-1)
        padding = tf.concat([tf.zeros_like(b[..., :4]), -tf.ones_like(b[..., 4:])], axis=-1)
        moved.append(tf.where(keep[..., None], shifted, tf.where((cls >= 0)[..., None], padding, b)))
    return images, moved
