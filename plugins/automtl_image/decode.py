"""Decoding and resizing images in ``tf.data`` pipelines, with errors that name the record.

Three ways to hold training images: decoded in memory (:func:`load_files`),
decoded once into an on-disk cache read batch by batch (:func:`cached_files`),
or decoded from their files every epoch (:class:`ImageFiles`). All three
decode and resize the same way, so they give the model the same pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from automtl.api import DataError, MappedArray, StreamedArray

BATCH = 256


def decode_file(path: Any, channels: int, size: tuple[int, int]) -> Any:
    """One file (a string tensor) -> ``uint8 [height, width, channels]`` at ``size`` (TensorFlow ops)."""
    import tensorflow as tf

    img = tf.io.decode_image(tf.io.read_file(path), channels=channels, dtype=tf.uint8, expand_animations=False)
    return _resize_uint8(img, size)


def _decoded(paths: list[str], channels: int, size: tuple[int, int]):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
    ds = ds.map(lambda p: decode_file(p, channels, size), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(BATCH).prefetch(2)


def decode_into(out: np.ndarray, paths: list[str], channels: int, size: tuple[int, int],
                where: Callable[[int], str]) -> np.ndarray:
    """Decode ``paths`` into ``out`` (``uint8 [n, h, w, c]``, in memory or a memory-mapped file)
    with a parallel ``tf.data`` pipeline; a file that fails is named (``where(i)`` names record ``i``)."""
    import tensorflow as tf

    try:
        start = 0
        for batch in _decoded(paths, channels, size):
            arr = batch.numpy()
            out[start : start + len(arr)] = arr
            start += len(arr)
        return out
    except tf.errors.OpError:
        pass
    for i, path in enumerate(paths):  # find the record that failed, to name it
        try:
            decode_file(tf.constant(path), channels, size)
        except tf.errors.OpError as exc:
            raise DataError(f"{where(i)}: cannot read image {path}: {op_message(exc)}") from None
    raise DataError(f"{where(0)}: cannot decode the images (TensorFlow failed on the batch but on no single file)")


def op_message(exc: Any) -> str:
    """What a TensorFlow op error says about the file (``Invalid PNG data, size 426``), without the op's
    graph text (``{{function_node __wrapped__DecodeImage...}}``, ``[Op:DecodeImage] name:``)."""
    text = (exc.message or "").strip().splitlines()[0] if getattr(exc, "message", None) else ""
    text = re.sub(r"\{\{function_node [^}]*\}\}", "", text)
    text = re.sub(r"\s*\[Op:[^\]]*\].*$", "", text).strip(" :")
    return text or type(exc).__name__


def load_files(paths: list[str], channels: int, size: tuple[int, int], where: Callable[[int], str]) -> np.ndarray:
    """Decode PNG/JPEG (and the other formats ``tf.io.decode_image`` reads) files to
    ``uint8 [n, height, width, channels]`` in memory. ``where(i)`` names record ``i`` in errors."""
    out = np.empty((len(paths), size[0], size[1], channels), dtype=np.uint8)
    return decode_into(out, paths, channels, size, where)


class ImageFiles(StreamedArray):
    """Image files decoded and resized batch by batch, every time they are read (no copy kept)."""

    def __init__(self, paths: list[str], channels: int, size: tuple[int, int],
                 where: Callable[[int], str] | None = None) -> None:
        super().__init__((len(paths), size[0], size[1], channels), np.uint8)
        self.paths = np.asarray(paths, dtype=object)
        self.channels, self.size = int(channels), (int(size[0]), int(size[1]))
        #: names record ``i`` (its data file and row) in errors; its path by default
        self.where = where

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "where": None}  # a closure does not pickle (trial processes): name the path then

    def read(self, indices: Any) -> Any:
        import tensorflow as tf

        paths = tf.gather(tf.constant(self.paths.astype(str)), indices)
        return tf.map_fn(lambda p: decode_file(p, self.channels, self.size), paths,
                         fn_output_signature=tf.TensorSpec((*self.size, self.channels), tf.uint8))

    def take(self, indices: np.ndarray) -> np.ndarray:
        rows = np.asarray(indices, np.int64)
        picked = [str(p) for p in self.paths[rows]]
        where = self.where
        return load_files(picked, self.channels, self.size,
                          (lambda i: where(int(rows[i]))) if where is not None else (lambda i: picked[i]))


class ScaledImageFiles(ImageFiles):
    """Image files for a model trained on float pixel arrays: 0-255 mapped onto the arrays' range (``top``)."""

    def __init__(self, paths: list[str], channels: int, size: tuple[int, int], top: float) -> None:
        super().__init__(paths, channels, size)
        self.dtype = np.dtype(np.float32)
        self.scale = float(top) / 255.0

    def read(self, indices: Any) -> Any:
        import tensorflow as tf

        return tf.cast(super().read(indices), tf.float32) * self.scale

    def take(self, indices: np.ndarray) -> np.ndarray:
        return super().take(indices).astype(np.float32) * np.float32(self.scale)


def cache_key(paths: list[str], channels: int, size: tuple[int, int]) -> str:
    """Names the decoded set: the files (with their sizes and modification times) and the target shape."""
    digest = hashlib.sha1(json.dumps([channels, list(size)]).encode())
    for p in paths:
        st = os.stat(p)
        digest.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (worker processes building the same cache wait for one)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename alone keeps the cache whole
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_files(paths: list[str], channels: int, size: tuple[int, int], folder: Path,
                 where: Callable[[int], str]) -> MappedArray:
    """The images decoded once into ``folder/images-<h>x<w>x<c>-<key>.npy`` and read from there by
    batches (memory-mapped). The cache is reused while the files are unchanged (by the trials of a
    run, its worker processes and a later resume) and written atomically, so an interrupted build
    never leaves a half-written cache behind."""
    n, (h, w) = len(paths), size
    folder = Path(folder)
    path = folder / f"images-{h}x{w}x{channels}-{n}-{cache_key(paths, channels, size)}.npy"
    shape = (n, h, w, channels)
    found = _open_cache(path, shape)
    if found is not None:
        return found
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the image cache folder {folder}: {exc.strerror or exc}") from None
    with _locked(folder / ".lock"):
        found = _open_cache(path, shape)  # another process built it while this one waited
        if found is not None:
            return found
        need = int(np.prod(shape, dtype=np.int64))
        free = shutil.disk_usage(folder).free
        if need > free:
            raise DataError(f"the decoded images need {need / 2**30:.1f} GiB in {folder}, but only "
                            f"{free / 2**30:.1f} GiB are free; free some space or set the image input's "
                            "cache: none (decode every epoch)")
        tmp = folder / f".{path.stem}.{os.getpid()}.tmp.npy"
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            decode_into(out, paths, channels, size, where)
            out.flush()
            del out
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    opened = _open_cache(path, shape)
    assert opened is not None
    return opened


def _open_cache(path: Path, shape: tuple[int, ...]) -> MappedArray | None:
    if not path.exists():
        return None
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return MappedArray(arr, str(path)) if arr.shape == shape and arr.dtype == np.uint8 else None


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
    out = np.empty((len(values), size[0], size[1], values.shape[-1]), dtype=dtype)
    start = 0
    for batch in ds.unbatch().batch(BATCH):
        arr = batch.numpy()
        out[start : start + len(arr)] = arr
        start += len(arr)
    return out


def _resize_uint8(img, size: tuple[int, int]):
    """Same interpolation as the model's Resizing layer, rounded back to uint8."""
    import tensorflow as tf

    out = tf.image.resize(img, size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)
