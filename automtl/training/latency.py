"""A trained model's serving latency, measured in the trial (the ``latency`` objective of a Pareto search).

One warm forward pass at batch 1, as a served model answers one request,
compiled with ``tf.function`` like a SavedModel signature; the median of
repeated calls, on the device the trial trained on.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

#: The objective's name next to the tasks' (a task cannot be called this in a latency search).
LATENCY = "latency"


def serving_latency_ms(model: Any, x: Mapping[str, np.ndarray], calls: int = 25) -> float:
    """Median milliseconds of one forward pass on the first validation row (after a warm-up call)."""
    feed = {k: tf.constant(np.asarray(v)[:1].astype(str) if np.asarray(v).dtype == object else np.asarray(v)[:1])
            for k, v in x.items()}
    forward = tf.function(lambda inputs: model(inputs, training=False))
    tf.nest.map_structure(lambda t: t.numpy(), forward(feed))  # trace and warm up
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), forward(feed))  # .numpy(): wait for the device
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)
