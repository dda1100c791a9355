"""The built-in ``image`` input: image files or NPZ arrays -> a convolutional trunk.

Sources: a column of image paths (CSV, box CSV, COCO JSON; PNG, JPEG and the
other formats ``tf.io.decode_image`` reads) or an NPZ array ``[n, h, w(, c)]``
of uint8 or float pixels. Decoding and resizing run in a ``tf.data`` pipeline;
resizing and scaling are also layers of the model, so the exported model takes
raw images of any size.

The trunk has ``image.stages`` stages (else ``trunk.depth``), each a 3x3
convolution, batch normalisation, ReLU and 2x2 max pooling, with
``image.filters`` filters (else ``trunk.units``) doubling per stage. It offers
two views: ``spatial`` (the last feature map, for detection) and ``vector``
(global average and max pooling, for the image-level heads; with
``image.pool: grid`` also the means over a 2x2 grid of the map, which keeps
where things are). The stages are
offered as blocks (:meth:`ImageInput.blocks`), so the searched ``sharing``
scheme can give tasks their own copies of the last stages (or of all).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np
import pydantic

from automtl.api import (Block, ConfigError, DataError, EncoderBlocks, InputEncoder, InputSpec, Options, PortableInput,
                         Table, TrialParams, is_missing)

PARAMETERS = {"image.stages": None, "image.filters": None, "image.flip": (True, False), "image.shift": None,
              "image.pool": ("global", "grid")}


class ImageOptions(Options):
    column: str | None = None
    array: str | None = None
    root: str | None = None
    size: tuple[pydantic.PositiveInt, pydantic.PositiveInt] | None = None
    channels: Literal[1, 3] | None = None


class ImageInput(InputEncoder):
    """Images from files named in a column, or from an NPZ array."""

    Options = ImageOptions
    parameters = PARAMETERS

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        if self.options.column is not None and self.options.array is not None:
            raise ConfigError(f"input '{name}': give either 'column' (image paths) or 'array' (NPZ pixels), not both")
        self.from_files = self.options.array is None
        self.column = self.options.column or "image_path"
        self._cache: tuple[Table, np.ndarray] | None = None

    # -- data -------------------------------------------------------------------------------
    def _owner(self) -> str:
        return f"input '{self.name}'"

    def _files(self, data: Table) -> list[str]:
        """Absolute image paths; relative ones resolve under ``root`` (default: the data file's folder)."""
        col = data.column(self.column, needed_by=self._owner())
        if self.options.root is not None:
            root = self.resolve_path(self.options.root)
        else:
            root = Path(data.meta.get("path", data.source)).parent
        missing = is_missing(col)
        files, absent = [], []
        for i, (value, miss) in enumerate(zip(col, missing)):
            if miss:
                raise DataError(f"{data.source}: {data.row_label(i)}: empty image path in column '{self.column}' "
                                f"(needed by {self._owner()})")
            p = Path(str(value).strip()).expanduser()
            p = p if p.is_absolute() else root / p
            files.append(str(p))
            if not os.path.isfile(p):
                absent.append(i)
        if absent:
            i = absent[0]
            more = f" (and {len(absent) - 1} more missing)" if len(absent) > 1 else ""
            raise DataError(f"{data.source}: {data.row_label(i)}: image not found: {col[i]} (looked for {files[i]}){more}")
        return files

    def _pixels(self, data: Table) -> np.ndarray:
        values = data.column(self.options.array, needed_by=self._owner())
        if values.ndim == 3:
            values = values[..., None]
        if values.ndim != 4 or values.shape[-1] not in (1, 3):
            raise DataError(f"{data.source}: array '{self.options.array}' (needed by {self._owner()}) must be "
                            f"[n, height, width] or [n, height, width, 1 or 3], got shape {values.shape}")
        if values.dtype == np.uint8:
            return values
        if values.dtype.kind not in "fiu":
            raise DataError(f"{data.source}: array '{self.options.array}' must hold uint8 or float pixels, "
                            f"got {values.dtype}")
        values = values.astype(np.float32)
        if not np.all(np.isfinite(values)):
            bad = int(np.flatnonzero(~np.isfinite(values).reshape(len(values), -1).all(axis=1))[0])
            raise DataError(f"{data.source}: {data.row_label(bad)}: array '{self.options.array}' holds NaN or "
                            "infinite pixels")
        return values

    def prepare(self, train: Table) -> None:
        if self.from_files:
            files = self._files(train)
            h, w, c = _probe(files[0], lambda: f"{train.source}: {train.row_label(0)}")
            self.size = tuple(self.options.size or (h, w))
            self.channels = int(self.options.channels or c)
            self.dtype = "uint8"
        else:
            raw = self._pixels(train)
            self.size = tuple(self.options.size or raw.shape[1:3])
            self.channels = int(raw.shape[-1])
            if self.options.channels is not None and self.options.channels != self.channels:
                raise ConfigError(f"input '{self.name}': channels is {self.options.channels}, but array "
                                  f"'{self.options.array}' has {self.channels}")
            self.dtype = "uint8" if raw.dtype == np.uint8 else "float32"
        images = self.arrays(train)[self.name]
        self._cache = (train, images)
        self.mean, self.variance = _channel_stats(images)

    def arrays(self, data: Table) -> dict[str, np.ndarray]:
        if self._cache is not None and self._cache[0] is data:
            return {self.name: self._cache[1]}
        from .decode import load_files, resize_arrays

        if self.from_files:
            images = load_files(self._files(data), self.channels, self.size,
                                lambda i: f"{data.source}: {data.row_label(i)}")
        else:
            raw = self._pixels(data)
            if raw.shape[-1] != self.channels:
                raise DataError(f"{data.source}: array '{self.options.array}' has {raw.shape[-1]} channel(s), "
                                f"expected {self.channels} as in the training data")
            images = resize_arrays(raw.astype(np.uint8 if self.dtype == "uint8" else np.float32), self.size)
        return {self.name: images}

    def specs(self) -> list[InputSpec]:
        source = {"column": self.column, "root": self.options.root} if self.from_files else {"array": self.options.array}
        meta = {"image": True, "size": list(self.size), "channels": self.channels, **source,
                "note": "a batch of same-size images, any size: resized to `size` inside the model"}
        return [InputSpec(self.name, self.dtype, (None, None, self.channels), meta)]

    # -- model ------------------------------------------------------------------------------
    def blocks(self, inputs: Mapping[str, Any], params: TrialParams) -> EncoderBlocks:
        """Resizing and scaling (shared), then one block per conv stage."""
        import keras

        from .layers import ResizeImages
        from .trunk import conv_stage, image_views

        stages = int(params.get("image.stages", params.trunk_depth))
        filters = int(params.get("image.filters", params.trunk_units))
        if stages < 1 or filters < 1:
            raise ValueError(f"input '{self.name}' needs image.stages >= 1 and image.filters >= 1, "
                             f"got {stages} and {filters}")
        if min(self.size) < 2**stages:
            raise ValueError(f"{stages} stages halve a {self.size[0]}x{self.size[1]} image below one pixel")
        x = ResizeImages(*self.size, name=f"{self.name}_resize")(inputs[self.name])
        x = keras.layers.Normalization(mean=self.mean, variance=self.variance, name=f"{self.name}_scale")(x)
        stack = [Block(f"{self.name}_stage{s}", functools.partial(conv_stage, filters * 2**s, params.l2))
                 for s in range(stages)]
        pool = str(params.get("image.pool", "global"))
        return EncoderBlocks(x, stack, functools.partial(image_views, self.name, pool))

    def augment(self, x: dict[str, Any], y: dict[str, Any], params: TrialParams, rng: Any) -> tuple[dict, dict]:
        """Random horizontal flips (``image.flip``) and shifts of up to ``image.shift`` of the
        image size; box targets of detection tasks move with the image."""
        import tensorflow as tf

        from .augment import flip_horizontal, translate

        flip = bool(params.get("image.flip", False))
        shift = float(params.get("image.shift", 0.0))
        if not flip and shift <= 0:
            return x, y
        names = [t.name for t in self.tasks if t.box_targets and t.boxes_input in (None, self.name) and t.name in y]
        images, boxes = x[self.name], [y[n] for n in names]
        batch = tf.shape(images)[0]
        if flip:
            images, boxes = flip_horizontal(images, boxes, rng.uniform([batch]) < 0.5)
        if shift > 0:
            max_dy, max_dx = (int(round(shift * s)) for s in self.size)
            dx = rng.uniform([batch], -max_dx, max_dx + 1, dtype=tf.int32)
            dy = rng.uniform([batch], -max_dy, max_dy + 1, dtype=tf.int32)
            images, boxes = translate(images, boxes, dx, dy)
        return {**x, self.name: images}, {**y, **dict(zip(names, boxes))}

    def portable_inputs(self, model: Any) -> list[PortableInput]:
        """ONNX and LiteRT have no antialiased resize: their models take images already at
        the training size (``size``), which the model's resizing layer leaves unchanged."""
        h, w = self.size
        step = {"op": "image_size", "size": [h, w], "channels": self.channels,
                "resize": "bilinear with antialiasing, as tf.image.resize(images, size, antialias=True)"}
        return [PortableInput(self.name, self.name, self.dtype, (h, w, self.channels), f"{self.name}_resize", "cast",
                              (step,))]

    def register_keras_objects(self) -> None:
        from . import layers  # noqa: F401  (registers ResizeImages)

    def describe(self) -> dict[str, Any]:
        return {"size": list(self.size), "channels": self.channels, "dtype": self.dtype}


def _probe(path: str, where: Any) -> tuple[int, int, int]:
    """Height, width and channel count (1 grey, 3 colour) of an image, from its header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            grey = img.mode in ("1", "L", "LA", "I", "I;16", "F")
            return img.height, img.width, 1 if grey else 3
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{where()}: cannot read image {path}: {exc}") from None


def _channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and variance of the training pixels (for the scaling layer)."""
    c = images.shape[-1]
    total, sq, count = np.zeros(c), np.zeros(c), 0
    for start in range(0, len(images), 512):
        chunk = images[start : start + 512].reshape(-1, c).astype(np.float64)
        total += chunk.sum(axis=0)
        sq += (chunk * chunk).sum(axis=0)
        count += len(chunk)
    mean = total / count
    variance = np.maximum(sq / count - mean * mean, 1e-6)
    return [float(v) for v in mean], [float(v) for v in variance]
