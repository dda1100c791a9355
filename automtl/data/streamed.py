"""Model inputs too large to hold in memory: rows read batch by batch while training.

An input plugin's ``arrays`` may return a :class:`StreamedArray` instead of a
numpy array (image files decoded per batch, or an on-disk cache of decoded
images); the trainer then streams every epoch through a parallel, prefetched
``tf.data`` pipeline that reads each batch's rows with :meth:`StreamedArray.read`.
Light to import: TensorFlow loads when a batch is first read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

#: Training arrays above this many MiB stream instead of being held as in-memory tensors.
ENV_INMEMORY_MB = "AUTOMTL_INMEMORY_MB"
DEFAULT_INMEMORY_MB = 1024.0


def memory_budget_bytes() -> int:
    """The in-memory budget for training data (``AUTOMTL_INMEMORY_MB``, default 1024 MiB), in bytes."""
    raw = os.environ.get(ENV_INMEMORY_MB, str(DEFAULT_INMEMORY_MB))
    try:
        return int(float(raw) * 2**20)
    except ValueError:
        return int(DEFAULT_INMEMORY_MB * 2**20)


class StreamedArray:
    """Rows ``[n, *row_shape]`` of one model input, read on demand.

    Subclasses implement :meth:`read`, TensorFlow code that runs inside a
    ``tf.data`` map (in parallel with the training step), and may override
    :meth:`take` (numpy rows, for statistics and tests).
    """

    def __init__(self, shape: tuple[int, ...], dtype: str | np.dtype) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def read(self, indices: Any) -> Any:
        """Rows at ``indices`` (an int64 tensor ``[b]``) as a ``[b, *row_shape]`` tensor."""
        raise NotImplementedError

    def take(self, indices: np.ndarray) -> np.ndarray:
        """Rows at ``indices`` as a numpy array (by default :meth:`read`, run eagerly)."""
        import tensorflow as tf

        return self.read(tf.constant(np.asarray(indices, np.int64))).numpy()


class MappedArray(StreamedArray):
    """A numpy array (typically ``np.load(path, mmap_mode="r")``, an on-disk cache) read by batches:
    random access, so epochs shuffle every row, and the operating system's page cache keeps
    the hot part in memory without the process holding it."""

    def __init__(self, array: np.ndarray, path: str | None = None) -> None:
        super().__init__(array.shape, array.dtype)
        self.array = array
        self.path = path

    def take(self, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, np.int64)
        order = np.argsort(idx, kind="stable")  # read the file forwards, then restore the order
        out = np.empty((len(idx), *self.shape[1:]), self.dtype)
        out[order] = self.array[idx[order]]
        return out

    def read(self, indices: Any) -> Any:
        import tensorflow as tf

        rows = tf.numpy_function(self.take, [indices], tf.as_dtype(self.dtype), stateful=False)
        rows.set_shape([None, *self.shape[1:]])
        return rows


class RowSubset(StreamedArray):
    """Some rows of a streamed array (a task's labelled rows), read through it: nothing is copied."""

    def __init__(self, base: StreamedArray, rows: np.ndarray) -> None:
        super().__init__((len(rows), *base.shape[1:]), base.dtype)
        self.base = base
        self.rows = np.asarray(rows, np.int64)

    def take(self, indices: np.ndarray) -> np.ndarray:
        return self.base.take(self.rows[np.asarray(indices, np.int64)])

    def read(self, indices: Any) -> Any:
        import tensorflow as tf

        return self.base.read(tf.gather(tf.constant(self.rows), indices))


def rows_of(values: Any, rows: np.ndarray) -> Any:
    """``values[rows]`` for numpy and streamed arrays alike."""
    return RowSubset(values, rows) if is_streamed(values) else values[rows]


def is_streamed(values: Any) -> bool:
    return isinstance(values, StreamedArray)


def wants_stream(data: Any, train: Path) -> bool:
    """Whether a training table is read from Parquet in batches (``data.stream``; by default when the
    table would take more than ``AUTOMTL_INMEMORY_MB`` in memory). ``data``: the experiment's ``data``."""
    from automtl.data.parquet import dataset_files, in_memory_bytes, is_parquet

    if data.stream is not None:
        return bool(data.stream)
    if data.folds is not None or not is_parquet(train):
        return False
    return in_memory_bytes(dataset_files(train, "training data")) > memory_budget_bytes()
