"""The built-in ``image`` input: image files or NPZ arrays -> a convolutional trunk or a pretrained backbone.

Sources: a column of image paths (CSV, box CSV, COCO JSON; PNG, JPEG and the
other formats ``tf.io.decode_image`` reads) or an NPZ array ``[n, h, w(, c)]``
of uint8 or float pixels. Decoding and resizing run in a ``tf.data`` pipeline;
resizing and scaling are also layers of the model, so the exported model takes
raw images of any size.

Image files are decoded into memory, or, when the decoded training images
would exceed ``AUTOMTL_INMEMORY_MB`` (or with the option ``cache: disk`` or
``none``), streamed: decoded once into an on-disk cache under the run folder
and read batch by batch, or decoded from their files every epoch.

``image.backbone`` picks the trunk. ``conv`` (the default) is a small
convolutional net trained from scratch: ``image.stages`` blocks (else
``trunk.depth``), each a 3x3 convolution, batch normalisation, ReLU and 2x2
max pooling, with ``image.filters`` filters (else ``trunk.units``) doubling
per block. The others are ``keras.applications`` models (see
:mod:`automtl_image.backbones`) with ``weights`` (ImageNet, a file or folder,
or none), fine-tuned as ``image.fine_tune`` says (``frozen``, the last
``image.trainable_blocks`` blocks, or ``all``) at ``learning_rate *
image.backbone_lr_scale``. Views: ``spatial`` (the last map of the conv trunk,
or the backbone's stride-``image.stride`` map, for detection) and ``vector``
(global pooling of the last map, for the image-level heads).
The conv trunk's vector view is global average and max pooling; with
``image.pool: grid`` also the means over a 2x2 grid of the map, which keeps
where things are. The conv stages are offered as blocks
(:meth:`ImageInput.blocks`), so the searched ``sharing`` scheme can give tasks
their own copies of the last stages (or of all); a pretrained backbone is
shared by every task.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pydantic

from automtl.api import (Block, ConfigError, DataError, EncoderBlocks, InputEncoder, InputSpec, MappedArray, Options, ParamSpec,
                         PortableInput, ServingSource, StreamedArray, Table, TrialParams, is_missing, memory_budget_bytes,
                         Unavailable, scale_learning_rate)

from . import backbones as _backbones
from .backbones import BACKBONES, FINE_TUNE, MIN_SIDE, STRIDES

TRUNKS = ("conv", *BACKBONES)
CACHE_MODES = ("auto", "memory", "disk", "none")
#: Images sampled for the per-channel statistics when they are decoded every epoch (cache: none).
STATS_SAMPLE = 2048

PARAMETERS = {
    "image.stages": ParamSpec("image.stages", None, low=1, integer=True, doc="conv trunk: blocks (else trunk.depth)"),
    "image.filters": ParamSpec("image.filters", None, low=1, integer=True,
                               doc="conv trunk: filters of the first block, doubling per block (else trunk.units)"),
    "image.flip": ParamSpec("image.flip", False, choices=(True, False), doc="random horizontal flips"),
    "image.shift": ParamSpec("image.shift", 0.0, low=0, high=0.5, high_open=True,
                             doc="random shifts, up to this share of the image size"),
    "image.backbone": ParamSpec("image.backbone", "conv", choices=TRUNKS, doc="the trunk: conv or a pretrained backbone"),
    "image.fine_tune": ParamSpec("image.fine_tune", "top", choices=FINE_TUNE, doc="what of a backbone trains"),
    "image.trainable_blocks": ParamSpec("image.trainable_blocks", 2, low=1, integer=True,
                                        doc="fine_tune top: how many of the last blocks train"),
    "image.backbone_lr_scale": ParamSpec("image.backbone_lr_scale", 0.1, low=0, low_open=True, high=10,
                                         doc="backbone learning rate = learning_rate x this"),
    "image.stride": ParamSpec("image.stride", 16, choices=STRIDES, doc="a backbone's spatial view: stride 8, 16 or 32"),
    "image.pool": ParamSpec("image.pool", "global", choices=("global", "grid"),
                            doc="conv trunk's vector view: global pooling, or also a 2x2 grid of region means"),
}


#: What ``space: auto`` searches for an input whose option ``backbone`` names a pretrained backbone.
BACKBONE_AUTO = {
    "image.fine_tune": {"choice": list(FINE_TUNE)},
    "image.trainable_blocks": {"int": [1, 4], "when": {"image.fine_tune": "top"}},
    "image.backbone_lr_scale": {"float": [0.01, 0.3], "log": True, "when": {"image.fine_tune": ["top", "all"]}},
    "learning_rate": {"float": [1.0e-4, 3.0e-3], "log": True},
    "batch_size": {"choice": [16, 32, 64]},
}


class ImageOptions(Options):
    column: str | None = None
    array: str | None = None
    root: str | None = None
    size: tuple[pydantic.PositiveInt, pydantic.PositiveInt] | None = None
    channels: Literal[1, 3] | None = None
    backbone: Literal[TRUNKS] = "conv"  # type: ignore[valid-type]
    weights: str = pydantic.Field("imagenet", description="imagenet, none, or a weights file or folder")
    fine_tune: Literal[FINE_TUNE] = "top"  # type: ignore[valid-type]
    trainable_blocks: pydantic.PositiveInt = 2
    backbone_lr_scale: float = pydantic.Field(0.1, gt=0.0, le=10.0)
    stride: Literal[STRIDES] = 16  # type: ignore[valid-type]
    cache: Literal[CACHE_MODES] = "auto"  # type: ignore[valid-type]


class ImageInput(InputEncoder):
    """Images from files named in a column, or from an NPZ array."""

    Options = ImageOptions
    parameters = PARAMETERS
    #: images are large: ``automtl predict`` serves 64 per batch
    serving_batch = 64
    serving_sources = "an image file or a folder of images"

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        if self.options.column is not None and self.options.array is not None:
            raise ConfigError(f"input '{name}': give either 'column' (image paths) or 'array' (NPZ pixels), not both")
        if self.options.array is not None and self.options.cache not in ("auto", "memory"):
            raise ConfigError(f"input '{name}': option 'cache: {self.options.cache}' is for image files; NPZ "
                              f"array '{self.options.array}' is read into memory")
        self.from_files = self.options.array is None
        self.column = self.options.column or "image_path"
        self._cache: tuple[Table, np.ndarray | StreamedArray] | None = None
        self.storage = "memory"
        self.pixel_scale = 1.0

    def auto_space(self) -> dict[str, Any]:
        """``space: auto``: the conv trunk's fragment (``auto_space.yaml``); with a pretrained ``backbone``
        option, the fine-tuning depth and the backbone's learning rate instead of conv trunk widths."""
        fragment = super().auto_space()
        if self.options.backbone == "conv":
            return fragment
        parameters = {k: v for k, v in (fragment.get("parameters") or {}).items()
                      if k not in ("image.stages", "image.filters")}
        parameters |= BACKBONE_AUTO
        return {**fragment, "parameters": parameters,
                "description": f"the {self.options.backbone} backbone (option backbone) fine-tuned as searched: "
                               "frozen, the last 1-4 blocks or all, the backbone at a searched share of the "
                               "learning rate; a shallow dense trunk on the pooled features"}

    def weights(self) -> Path | str | None:
        """The ``weights`` option: "imagenet", None, or the file or folder it names (checked to exist)."""
        value = self.options.weights.strip()
        if value.lower() in ("imagenet", "none", "null", ""):
            return None if value.lower() != "imagenet" else "imagenet"
        path = self.resolve_path(value)
        if not path.exists():
            raise ConfigError(f"input '{self.name}': option 'weights': {path} not found (expected imagenet, none, "
                              "or a weights file or folder)")
        return path

    def unavailable(self) -> dict[str, Unavailable]:
        """With ``weights: imagenet``: the backbones whose weights are neither in Keras' cache nor
        downloadable here (known before the first trial, not found trial by trial)."""
        if self.options.weights.strip().lower() != "imagenet":
            return {}
        missing = _backbones.offline_backbones()
        if not missing:
            return {}
        host = _backbones.WEIGHTS_HOST[0]
        why = (f"input '{self.name}': the ImageNet weights of {', '.join(missing)} are not in Keras' cache "
               f"({_backbones.keras_cache()}) and {host} cannot be reached; give the input option weights: PATH "
               "(a weights file, or a folder such as a copy of ~/.keras/models) or weights: none")
        return {"image.backbone": Unavailable(tuple(missing), why, self.options.backbone)}

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

    def _storage(self, rows: int) -> str:
        """Where decoded training images live: ``memory``, ``disk`` (a cache read per batch) or ``none``
        (decoded from their files every epoch). ``auto`` streams what would not fit in memory."""
        mode = self.options.cache
        if mode == "auto":
            decoded = rows * self.size[0] * self.size[1] * self.channels
            if decoded <= memory_budget_bytes():
                return "memory"
            mode = "disk" if self.cache_dir is not None else "none"
        return mode

    def prepare(self, train: Table) -> None:
        if self.options.weights.strip().lower() not in ("imagenet", "none", "null", ""):
            self.weights()  # a missing weights path is refused before any image is decoded
        if self.from_files:
            files = self._files(train)
            h, w, c = _probe(files[0], lambda: f"{train.source}: {train.row_label(0)}")
            self.size = tuple(self.options.size or (h, w))
            self.channels = int(self.options.channels or c)
            self.dtype = "uint8"
            self.storage = self._storage(len(files))
        else:
            raw = self._pixels(train)
            self.size = tuple(self.options.size or raw.shape[1:3])
            self.channels = int(raw.shape[-1])
            if self.options.channels is not None and self.options.channels != self.channels:
                raise ConfigError(f"input '{self.name}': channels is {self.options.channels}, but array "
                                  f"'{self.options.array}' has {self.channels}")
            self.dtype = "uint8" if raw.dtype == np.uint8 else "float32"
            # pretrained backbones want 0..255: float pixels in [0, 1] are scaled up inside the model
            self.pixel_scale = 255.0 if self.dtype == "float32" and float(raw.max(initial=0.0)) <= 1.0 else 1.0
            self.pixel_top = pixel_top(raw)
        images = self.arrays(train)[self.name]
        self._cache = (train, images)
        self.mean, self.variance = _channel_stats(images)

    def arrays(self, data: Table) -> dict[str, np.ndarray | StreamedArray]:
        if self._cache is not None and self._cache[0] is data:
            return {self.name: self._cache[1]}
        from .decode import ImageFiles, cached_files, load_files, resize_arrays

        if self.from_files:
            files = self._files(data)
            where = lambda i: f"{data.source}: {data.row_label(i)}"  # noqa: E731
            if self.storage == "none":
                return {self.name: ImageFiles(files, self.channels, self.size, where)}
            if self.storage == "disk":
                folder = self.cache_dir if self.cache_dir is not None else Path(data.meta.get("path", data.source)).parent / ".automtl-cache"
                return {self.name: cached_files(files, self.channels, self.size, Path(folder), where)}
            images = load_files(files, self.channels, self.size, where)
        else:
            raw = self._pixels(data)
            if raw.shape[-1] != self.channels:
                raise DataError(f"{data.source}: array '{self.options.array}' has {raw.shape[-1]} channel(s), "
                                f"expected {self.channels} as in the training data")
            images = resize_arrays(raw.astype(np.uint8 if self.dtype == "uint8" else np.float32), self.size)
        return {self.name: images}

    def specs(self) -> list[InputSpec]:
        source = {"column": self.column, "root": self.options.root} if self.from_files else {"array": self.options.array}
        if not self.from_files and self.dtype == "float32":  # what image files' 255 maps to at predict time
            source["pixel_top"] = getattr(self, "pixel_top", 255.0)
        meta = {"image": True, "size": list(self.size), "channels": self.channels, **source,
                "note": "a batch of same-size images, any size: resized to `size` inside the model"}
        return [InputSpec(self.name, self.dtype, (None, None, self.channels), meta)]

    # -- model ------------------------------------------------------------------------------
    def settings(self, params: TrialParams) -> dict[str, Any]:
        """This trial's trunk settings: searched values over options."""
        o = self.options
        return {
            "backbone": str(params.get("image.backbone", o.backbone)),
            "fine_tune": str(params.get("image.fine_tune", o.fine_tune)),
            "trainable_blocks": int(params.get("image.trainable_blocks", o.trainable_blocks)),
            "backbone_lr_scale": float(params.get("image.backbone_lr_scale", o.backbone_lr_scale)),
            "stride": int(params.get("image.stride", o.stride)),
        }

    def build(self, inputs: Mapping[str, Any], params: TrialParams) -> dict[str, Any]:
        s = self.settings(params)
        if s["backbone"] == "conv":
            return super().build(inputs, params)  # the conv blocks, applied once
        if s["backbone"] not in BACKBONES:
            raise ValueError(f"unknown image.backbone '{s['backbone']}'; expected one of {', '.join(TRUNKS)}")
        return self._build_backbone(inputs[self.name], s)

    def blocks(self, inputs: Mapping[str, Any], params: TrialParams) -> EncoderBlocks | None:
        """The conv trunk: resizing and scaling (shared), then one block per conv stage. A pretrained
        backbone offers nothing to copy (None): every task shares it."""
        if self.settings(params)["backbone"] != "conv":
            return None
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

    def _build_backbone(self, images: Any, s: Mapping[str, Any]) -> dict[str, Any]:
        import keras

        from . import backbones
        from .layers import BackbonePixels, ResizeImages

        name = s["backbone"]
        if s["fine_tune"] not in backbones.FINE_TUNE:
            raise ValueError(f"unknown image.fine_tune '{s['fine_tune']}'; expected one of {', '.join(FINE_TUNE)}")
        if s["stride"] not in STRIDES:
            raise ValueError(f"image.stride must be one of {', '.join(map(str, STRIDES))}, got {s['stride']}")
        size = tuple(max(MIN_SIDE, side) for side in self.size)  # small images are upscaled for the backbone
        weights = self.weights()
        built = backbones.build(name, size, weights, s["fine_tune"], s["trainable_blocks"], f"{self.name}_backbone")
        if weights is not None and s["backbone_lr_scale"] != 1.0:
            scale_learning_rate(built.features, s["backbone_lr_scale"])
        x = ResizeImages(*self.size, name=f"{self.name}_resize")(images)  # the training size (portable exports)
        if size != tuple(self.size):  # then up to the backbone's minimum side: bilinear, as antialiasing is upwards
            x = ResizeImages(*size, antialias=False, name=f"{self.name}_upscale")(x)
        x = BackbonePixels(BACKBONES[name].preprocess, self.pixel_scale, name=f"{self.name}_pixels")(x)
        maps = dict(zip(built.strides, built.features(x)))
        vector = keras.layers.GlobalAveragePooling2D(name=f"{self.name}_avg")(maps[max(built.strides)])
        return {"spatial": maps[s["stride"]], "vector": vector}

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

    @classmethod
    def serving_arrays(cls, spec: Mapping[str, Any], columns: Mapping[str, np.ndarray], source: Path,
                       root: Path | None) -> tuple[Any, dict[str, np.ndarray]] | None:
        """Image files named in the manifest's column (relative to ``root``, else to the data file's
        folder), decoded and resized to the training size as in training; also each image's own
        width and height, so that boxes can be given back in its pixels."""
        from .serving import grey_arrays, serving_images

        if not spec.get("column"):  # an NPZ input: grey images may lack their channel axis
            return grey_arrays(spec, columns)
        return serving_images(spec, columns, Path(source), root)

    @classmethod
    def serving_source(cls, path: Path, inputs: Sequence[dict[str, Any]]) -> ServingSource | None:
        """A folder of images (one row per image file, sorted, sub-folders included) or one image file,
        fed to the model's one image input; their names are written beside the outputs."""
        from .serving import image_source

        return image_source(Path(path), inputs)

    def portable_inputs(self, model: Any) -> list[PortableInput]:
        """ONNX and LiteRT have no antialiased resize: their models take images already at
        the training size (``size``), which the model's resizing layer leaves unchanged."""
        h, w = self.size
        step = {"op": "image_size", "size": [h, w], "channels": self.channels,
                "resize": "bilinear with antialiasing, as tf.image.resize(images, size, antialias=True)"}
        return [PortableInput(self.name, self.name, self.dtype, (h, w, self.channels), f"{self.name}_resize", "cast",
                              (step,))]

    def register_keras_objects(self) -> None:
        from . import layers  # noqa: F401  (registers ResizeImages, BackbonePixels)

    def describe(self) -> dict[str, Any]:
        return {"size": list(self.size), "channels": self.channels, "dtype": self.dtype, "storage": self.storage}


def _probe(path: str, where: Any) -> tuple[int, int, int]:
    """Height, width and channel count (1 grey, 3 colour) of an image, from its header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            grey = img.mode in ("1", "L", "LA", "I", "I;16", "F")
            return img.height, img.width, 1 if grey else 3
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{where()}: cannot read image {path}: {exc}") from None


def pixel_top(raw: np.ndarray) -> float:
    """The top of a float pixel array's scale: 1 (pixels in 0-1), 255 (above 127: 0-255), else its maximum
    (e.g. 16 for 4-bit pixels), so that an image file's 0-255 maps onto the scale the model learned."""
    top = float(raw.max(initial=0.0)) if raw.size else 255.0
    return 1.0 if top <= 1.0 else 255.0 if top > 127.0 else top


def _channel_stats(images: np.ndarray | StreamedArray) -> tuple[list[float], list[float]]:
    """Per-channel mean and variance of the training pixels (for the conv trunk's scaling layer);
    of a random sample when the images are decoded from their files every epoch."""
    if isinstance(images, MappedArray):
        images = images.array  # memory-mapped: read in chunks below
    elif isinstance(images, StreamedArray):
        n = len(images)
        pick = np.arange(n) if n <= STATS_SAMPLE else np.sort(np.random.default_rng(0).choice(n, STATS_SAMPLE, replace=False))
        images = images.take(pick)
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
