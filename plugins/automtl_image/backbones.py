"""Pretrained backbones from ``keras.applications``: build, load weights, choose what trains, tap feature maps.

Each backbone is declared once in :data:`BACKBONES`: the Keras constructor,
how it wants its pixels, how its layer names group into blocks (the unit of
``fine_tune: top``), and the file name Keras gives its ImageNet weights
without the classifier (so a copy of Keras's download folder serves as a
``weights`` folder on a machine without network). Nothing here imports
Keras until a backbone is built, so the names can be listed cheaply.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Feature-map strides a backbone offers as the "spatial" view.
STRIDES = (8, 16, 32)
#: keras.applications backbones need at least this many pixels a side; smaller images are upscaled in the model.
MIN_SIDE = 32
#: How fine-tuning can go: feature extraction, the last blocks, or everything.
FINE_TUNE = ("frozen", "top", "all")

_MOBILENET_V3 = r"^(expanded_conv(?:_\d+)?|conv_1)(?:_|$)"
_EFFICIENTNET = r"^(block\d+[a-z]|top)_"


@dataclass(frozen=True)
class Backbone:
    constructor: str
    #: "internal": the application's own preprocessing layers (it takes 0..255 RGB); "tf": scaled to
    #: [-1, 1]; "caffe": BGR with the ImageNet channel means subtracted.
    preprocess: str
    #: Group 1 of this pattern, matched against a layer name, names the layer's block; a layer that
    #: does not match belongs to the block before it (the first ones to the stem).
    block: str
    #: Keras's file name (a glob) for the ImageNet weights without the classifier.
    keras_file: str
    kwargs: dict[str, Any] = field(default_factory=dict)


BACKBONES: dict[str, Backbone] = {
    "mobilenet_v3_small": Backbone("MobileNetV3Small", "internal", _MOBILENET_V3,
                                   "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
    "mobilenet_v3_small_minimalistic": Backbone(
        "MobileNetV3Small", "internal", _MOBILENET_V3,
        "weights_mobilenet_v3_small_minimalistic_224_1.0_float_no_top_v2.h5", {"minimalistic": True}),
    "mobilenet_v3_large": Backbone("MobileNetV3Large", "internal", _MOBILENET_V3,
                                   "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"),
    "mobilenet_v2": Backbone("MobileNetV2", "tf", r"^(expanded_conv|block_\d+|Conv_1)(?:_|$)",
                             "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_*_no_top.h5"),
    "efficientnet_b0": Backbone("EfficientNetB0", "internal", _EFFICIENTNET, "efficientnetb0_notop.h5"),
    "efficientnet_v2_b0": Backbone("EfficientNetV2B0", "internal", _EFFICIENTNET, "efficientnetv2-b0_notop.h5"),
    "resnet50": Backbone("ResNet50", "caffe", r"^(conv\d_block\d+)_",
                         "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}


@dataclass
class BuiltBackbone:
    """The feature extractor (a nested Keras model: stride-``s`` maps plus the final map) and what trains."""

    features: Any
    strides: tuple[int, ...]
    blocks: list[str]
    trainable_blocks: list[str]


def weights_file(weights: Path, name: str) -> Path:
    """The weights for backbone ``name``: ``weights`` itself if a file, else a file in that folder named
    ``<name>.weights.h5`` / ``<name>.h5`` or as Keras names its ImageNet download."""
    if weights.is_file():
        return weights
    wanted = [f"{name}.weights.h5", f"{name}.h5", BACKBONES[name].keras_file]
    for pattern in wanted:
        hits = sorted(p for p in weights.iterdir() if fnmatch.fnmatch(p.name, pattern))
        if hits:
            return hits[-1]
    raise ValueError(f"no weights for backbone '{name}' in folder {weights} (looked for {', '.join(wanted)})")


#: Where ``keras.applications`` downloads its weights from (the host a search must reach without a cache).
WEIGHTS_HOST = ("storage.googleapis.com", 443)


def keras_cache() -> Path:
    """Keras' download folder: ``$KERAS_HOME/models``, else ``~/.keras/models``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def cached(name: str) -> bool:
    """The ImageNet weights of backbone ``name`` are in Keras' download folder."""
    folder = keras_cache()
    return folder.is_dir() and any(fnmatch.fnmatch(p.name, BACKBONES[name].keras_file) for p in folder.iterdir())


@functools.lru_cache(maxsize=1)
def can_download(timeout: float = 2.0) -> bool:
    """Whether Keras' weights host answers (one short connection attempt per process)."""
    try:
        with socket.create_connection(WEIGHTS_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def offline_backbones() -> list[str]:
    """Backbones whose ImageNet weights are neither cached nor downloadable here (checked before any trial)."""
    missing = [name for name in BACKBONES if not cached(name)]
    return missing if missing and not can_download() else []


def application(name: str, size: tuple[int, int], weights: str | Path | None) -> Any:
    """The ``keras.applications`` model without its classifier, with ``weights`` loaded:
    ``"imagenet"`` (Keras downloads and caches them), a file or folder (see :func:`weights_file`), or None."""
    import keras

    spec = BACKBONES[name]
    build = getattr(keras.applications, spec.constructor)
    kwargs = dict(include_top=False, input_shape=(*size, 3), **spec.kwargs)
    if weights == "imagenet":
        try:
            return build(weights="imagenet", **kwargs)
        except Exception as exc:  # no network, a proxy, a corrupt cache: say what to do instead
            raise ValueError(f"cannot get the ImageNet weights of backbone '{name}' ({type(exc).__name__}: {exc}); "
                             "without network give the input option weights: PATH (a weights file, or a copy of "
                             "Keras's ~/.keras/models folder)") from None
    model = build(weights=None, **kwargs)
    if weights is not None:
        path = weights_file(Path(weights), name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model.load_weights(str(path))
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ValueError(f"weights file {path} does not fit backbone '{name}': {first}") from None
        skipped = [str(w.message) for w in caught if "Skipping" in str(w.message) or "freshly-initialized" in str(w.message)]
        if skipped:  # Keras loaded part of the file and left the rest random: not a pretrained backbone
            raise ValueError(f"weights file {path} does not fit backbone '{name}': {skipped[0].splitlines()[0]}")
    return model


def blocks_of(model: Any, name: str) -> list[tuple[str, list[Any]]]:
    """The application's layers grouped into blocks, in order (``stem`` first)."""
    pattern = re.compile(BACKBONES[name].block)
    groups: list[tuple[str, list[Any]]] = []
    for layer in model.layers:
        match = pattern.match(layer.name)
        key = match.group(1) if match else (groups[-1][0] if groups else "stem")
        if not groups or groups[-1][0] != key:
            groups.append((key, []))
        groups[-1][1].append(layer)
    return groups


def set_trainable(model: Any, name: str, fine_tune: str, blocks: int, pretrained: bool) -> tuple[list[str], list[str]]:
    """Freeze what should not train; returns (all block names, the trainable ones).

    A pretrained backbone keeps its BatchNorm layers frozen (inference mode,
    statistics and scale kept) whatever trains around them, as Keras's
    transfer-learning guide advises: small batches would otherwise wreck the
    statistics learnt on ImageNet. A backbone without weights trains whole.
    """
    import keras

    groups = blocks_of(model, name)
    names = [g for g, _ in groups]
    if not pretrained or fine_tune == "all":
        train = set(names)
    elif fine_tune == "frozen":
        train = set()
    elif fine_tune == "top":
        train = set(names[-max(1, int(blocks)):])
    else:
        raise ValueError(f"unknown image.fine_tune '{fine_tune}'; expected one of {', '.join(FINE_TUNE)}")
    for key, layers in groups:
        for layer in layers:
            frozen_bn = pretrained and isinstance(layer, keras.layers.BatchNormalization)
            layer.trainable = key in train and not frozen_bn
    return names, [n for n in names if n in train]


def tap_indices(model: Any, size: tuple[int, int]) -> dict[int, int]:
    """Index of the last layer whose output is the stride-``s`` feature map, for each stride.

    Read off a model built for ``size`` (both sides multiples of 32 and at least 64, so
    that padding layers and squeeze-excitation pools never match a stride)."""
    h, w = size
    found: dict[int, int] = {}
    for i, layer in enumerate(model.layers):
        shape = getattr(layer.output, "shape", None)
        if shape is None or len(shape) != 4:
            continue
        for s in STRIDES:
            if shape[1] == h // s and shape[2] == w // s:
                found[s] = i
    return found


_TAPS: dict[str, dict[int, int]] = {}


def taps(name: str, model: Any, size: tuple[int, int]) -> dict[int, int]:
    """:func:`tap_indices` for this backbone; from ``model`` itself when its size allows, else from a
    probe built once per process (layer order does not depend on the input size)."""
    if name not in _TAPS:
        if all(s % 32 == 0 and s >= 64 for s in size):
            _TAPS[name] = tap_indices(model, size)
        else:
            _TAPS[name] = tap_indices(application(name, (64, 64), None), (64, 64))
        missing = [s for s in STRIDES if s not in _TAPS[name]]
        if missing:
            raise ValueError(f"backbone '{name}': no feature map at stride(s) {missing}")
    return _TAPS[name]


def build(name: str, size: tuple[int, int], weights: str | Path | None, fine_tune: str, blocks: int,
          layer_name: str) -> BuiltBackbone:
    """The backbone as one nested Keras model returning its stride-8, -16 and -32 maps."""
    import keras

    app = application(name, size, weights)
    all_blocks, trainable = set_trainable(app, name, fine_tune, blocks, pretrained=weights is not None)
    index = taps(name, app, size)
    outputs = [app.layers[index[s]].output for s in STRIDES]
    features = keras.Model(app.inputs, outputs, name=layer_name)
    return BuiltBackbone(features, STRIDES, all_blocks, trainable)
