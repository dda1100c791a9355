"""The training rows a multi-fidelity trial sees: a seeded, nested subsample."""

from __future__ import annotations

import numpy as np


def subsample(rows: int, fraction: float, seed: int) -> np.ndarray:
    """Positions of ``fraction`` of ``rows`` rows: the same for every trial of a rung, and nested.

    One permutation per search (its seed), cut at each rung's length: a
    configuration promoted to more rows keeps the rows it was chosen on.
    """
    order = np.random.default_rng(seed).permutation(rows)
    keep = min(rows, max(1, int(round(rows * fraction))))
    return np.sort(order[:keep])
