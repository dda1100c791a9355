"""Per-task metrics -> one objective value. Never uses the loss weights."""

from __future__ import annotations

import math
from typing import Mapping


def combine(scores: Mapping[str, float], importance: Mapping[str, float]) -> float:
    """Importance-weighted mean of the tasks' direction-aware scores (higher is better)."""
    total = sum(importance[t] for t in scores)
    value = sum(importance[t] * s for t, s in scores.items()) / total
    return value if math.isfinite(value) else float("nan")
