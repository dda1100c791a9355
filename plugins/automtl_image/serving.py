"""``automtl predict`` for image inputs: paths in a column (or a folder's files) -> batches of decoded images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from automtl.api import DataError, MissingColumns, ServingSource, is_missing

#: Image files ``tf.io.decode_image`` reads, listed from a ``--data`` folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
#: The column a folder's (or a single image's) file names go into, written beside the outputs.
PATH_COLUMN = "image_path"


def image_source(path: Path, inputs: Sequence[dict[str, Any]]) -> ServingSource | None:
    """A folder of images (sorted, sub-folders included) or one image file, as one row per image for the
    model's one image input, under the column that input reads.

    Whatever the model was trained from: an input trained on NPZ pixel arrays (or a COCO file) reads the
    files' paths too (the manifest entry in memory gets the column; :func:`serving_images` decodes them)."""
    if path.is_dir():
        files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{path}: the folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        files = [path.name]
    else:
        return None
    images = [s for s in inputs if s.get("image")]
    if len(images) != 1 or len(inputs) != 1:
        names = ", ".join(s["name"] for s in inputs)
        raise DataError(f"{path}: a folder or file of images feeds a model with one image input; "
                        f"this model's inputs are {names}: give a data file with their columns")
    spec = images[0]
    if not spec.get("column"):
        spec["column"] = PATH_COLUMN
    paths = np.array(files, dtype=object)
    return ServingSource({PATH_COLUMN: paths, spec["column"]: paths}, keep=(PATH_COLUMN,))


def grey_arrays(spec: Mapping[str, Any], columns: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict] | None:
    """An NPZ input's grey images given without their channel axis, with it; None for anything else
    (automtl maps and checks the array as any other)."""
    values = columns.get(spec.get("array", ""))
    expected = tuple(spec.get("shape", [None])[1:])
    if values is None or np.ndim(values) != len(expected) or not expected or expected[-1] != 1:
        return None
    values = np.asarray(values)[..., None]
    if not all(e is None or e == v for e, v in zip(expected, values.shape[1:])):
        return None
    try:
        return values.astype(spec["dtype"]), {}
    except (TypeError, ValueError):
        return None


def serving_images(spec: Mapping[str, Any], columns: Mapping[str, np.ndarray], source: Path,
                   root: Path | None) -> tuple[Any, dict[str, np.ndarray]] | None:
    """The image files of ``spec``'s column, read batch by batch as in training (decoded and resized to the
    training size), with each image's own ``width`` and ``height``. None for an NPZ-array input, unless
    ``automtl predict`` routed a folder of images to it (it then names the column of their paths); a model
    trained on float arrays gets float pixels on its arrays' scale (``pixel_top``: 1, 255 or their maximum)."""
    from .decode import ImageFiles

    column = spec.get("column")
    if not column:
        return None
    name = spec["name"]
    if column not in columns:
        raise MissingColumns(str(source), [(column, f"model input '{name}' (image paths)")], list(columns))
    base = Path(root) if root is not None else (source if source.is_dir() else source.parent)
    values = columns[column]
    empty = is_missing(np.asarray(values, dtype=object))
    paths: list[str] = []
    for i, (value, miss) in enumerate(zip(values, empty)):
        if miss:
            raise DataError(f"{source}: row {i + 1}: empty image path in column '{column}'")
        p = Path(str(value).strip()).expanduser()
        p = p if p.is_absolute() else base / p
        if not os.path.isfile(p):
            hint = "" if root is not None else " (relative paths are read from the data file's folder; see --root)"
            raise DataError(f"{source}: row {i + 1}: image not found: {value} (looked for {p}){hint}")
        paths.append(str(p))
    width, height = _sizes(paths, source)
    size = tuple(int(s) for s in spec["size"])
    if spec.get("array") and spec.get("dtype") == "float32":  # trained on float arrays: their pixel scale
        from .decode import ScaledImageFiles

        images = ScaledImageFiles(paths, int(spec["channels"]), size, float(spec.get("pixel_top", 255.0)))
        return images, {"width": width, "height": height}
    return ImageFiles(paths, int(spec["channels"]), size), {"width": width, "height": height}


def _sizes(paths: list[str], source: Path) -> tuple[np.ndarray, np.ndarray]:
    """Each image's width and height, from its header."""
    from PIL import Image, UnidentifiedImageError

    width, height = np.empty(len(paths)), np.empty(len(paths))
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as img:
                width[i], height[i] = img.width, img.height
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{source}: row {i + 1}: cannot read image {p}: {exc}") from None
    return width, height
