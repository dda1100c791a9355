"""Train/validation split with a fixed seed, so reruns compare like with like."""

from __future__ import annotations

import numpy as np

from automtl.data.table import Table
from automtl.errors import ConfigError, DataError


def split_fraction(table: Table, fraction: float, seed: int) -> tuple[Table, Table]:
    """Hold out ``fraction`` of the rows at random (seeded) for validation."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"data.valid_fraction must be between 0 and 1 (exclusive), got {fraction}")
    n = len(table)
    n_valid = int(round(n * fraction))
    if n_valid < 1 or n - n_valid < 1:
        raise DataError(
            f"{table.source}: {n} rows cannot be split with valid_fraction={fraction}; "
            "both parts need at least one row"
        )
    order = np.random.default_rng(seed).permutation(n)
    valid_idx, train_idx = np.sort(order[:n_valid]), np.sort(order[n_valid:])
    return table.take(train_idx, f"{table.source} (train split)"), table.take(
        valid_idx, f"{table.source} (validation split)"
    )
