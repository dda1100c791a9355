"""Per-task metrics -> one objective value. Never uses the loss weights."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np


def combine(scores: Mapping[str, float], importance: Mapping[str, float]) -> float:
    """Importance-weighted mean of the tasks' direction-aware scores (higher is better)."""
    total = sum(importance[t] for t in scores)
    value = sum(importance[t] * s for t, s in scores.items()) / total
    return value if math.isfinite(value) else float("nan")


def mean_of(dicts: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Key-wise mean over folds (NaN-aware: a fold without a value does not sink the others)."""
    out = {}
    for k in dicts[0]:
        values = np.array([d.get(k, np.nan) for d in dicts], dtype=np.float64)
        out[k] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return out
