"""Learning-rate schedules: a factor of the base learning rate per epoch.

The trainer sets each optimizer's rate to ``base * factor(epoch)`` before the
epoch runs (the rate is a variable, so nothing retraces). Schedules span the
search's ``epochs``; early stopping may end a trial before the end.

- ``constant``: 1.
- ``cosine``: linear warm-up over the first 5% of epochs (at least one), then
  cosine decay towards 0 (Loshchilov & Hutter 2017, with warm-up as in Goyal et al. 2017).
- ``onecycle``: from 1/25 up to 1 over the first 30% of epochs, then down to
  1/25/10^4, both halves cosine-shaped (Smith & Topin 2019, as PyTorch's
  ``OneCycleLR`` defaults; the rate only, momentum stays fixed).
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine", "onecycle")
WARMUP_FRACTION = 0.05
ONECYCLE_RISE = 0.3
ONECYCLE_START = 1.0 / 25.0
ONECYCLE_END = ONECYCLE_START / 1e4


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """The factor for ``epoch`` (0-based) of ``epochs``."""
    if schedule == "constant" or epochs <= 1:
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown lr_schedule '{schedule}'; expected one of {', '.join(SCHEDULES)}")
        return 1.0
    if schedule == "cosine":
        warmup = max(1, math.ceil(WARMUP_FRACTION * epochs))
        if epoch < warmup:
            return (epoch + 1) / (warmup + 1)
        progress = (epoch - warmup) / max(1, epochs - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "onecycle":
        rise = max(1, round(ONECYCLE_RISE * epochs))
        if epoch < rise:
            return _cosine_between(ONECYCLE_START, 1.0, epoch / rise)
        return _cosine_between(1.0, ONECYCLE_END, (epoch - rise) / max(1, epochs - 1 - rise))
    raise ValueError(f"unknown lr_schedule '{schedule}'; expected one of {', '.join(SCHEDULES)}")


def _cosine_between(start: float, end: float, t: float) -> float:
    t = min(max(t, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * t))
