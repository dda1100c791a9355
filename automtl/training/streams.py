"""``tf.data`` pipelines over prepared arrays, for data that is not held as in-memory tensors.

Batches are built from shuffled row indices: in-memory arrays are gathered
(from variables, so no graph rewrite ever copies them into a constant), and
streamed inputs (:class:`~automtl.data.streamed.StreamedArray`, such as image
files) read their rows in a parallel map, prefetched while the previous batch
trains.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf

from automtl.data.arrays import Arrays
from automtl.data.streamed import is_streamed


def _holder(values: np.ndarray) -> tf.Variable:
    data = values.astype(str) if values.dtype == object else values
    return tf.Variable(data, trainable=False)


def fetcher(arrays: Mapping[str, Any]) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """``fetch(indices) -> {name: rows}`` for a dict of numpy and streamed arrays."""
    held = {k: _holder(v) for k, v in arrays.items() if not is_streamed(v)}
    streamed = {k: v for k, v in arrays.items() if is_streamed(v)}

    def fetch(indices: tf.Tensor) -> dict[str, tf.Tensor]:
        out = {k: tf.gather(v, indices) for k, v in held.items()}
        out.update({k: v.read(indices) for k, v in streamed.items()})
        return {k: out[k] for k in arrays}  # the caller's key order

    return fetch


def training_batches(arrays: Arrays, batch: int, seed: int) -> tf.data.Dataset:
    """``(x, y, mask)`` batches of every row, reshuffled each epoch, prefetched."""
    fx, fy, fm = fetcher(arrays.x), fetcher(arrays.y), fetcher(arrays.mask)
    n = len(arrays)
    ds = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True).batch(batch)
    ds = ds.map(lambda idx: (fx(idx), fy(idx), fm(idx)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def ordered_batches(x: Mapping[str, Any], n: int, batch: int) -> tf.data.Dataset:
    """Input batches of rows ``0..n-1`` in order (for prediction), read ahead in parallel."""
    fx = fetcher(x)
    ds = tf.data.Dataset.range(n).batch(batch)
    return ds.map(fx, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2)
