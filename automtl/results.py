"""Trial records -> ``trials.csv`` and the leaderboard (no TensorFlow needed)."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

from automtl.backends.base import TrialRecord

BASE_COLUMNS = ["number", "state", "score", "duration_s", "device", "best_epoch"]


def columns(records: Sequence[TrialRecord]) -> list[str]:
    metric_cols = sorted({k for r in records for k in r.metrics})
    param_cols = sorted({k for r in records for k in r.params})
    return BASE_COLUMNS + metric_cols + [f"param.{p}" for p in param_cols] + ["reason"]


def write_trials_csv(records: Sequence[TrialRecord], path: Path) -> Path:
    """Rewrite the table atomically after every trial, so a crash loses nothing finished."""
    cols = columns(records)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        for r in sorted(records, key=lambda r: r.number):
            row = {"number": r.number, "state": r.state, "score": _fmt(r.score),
                   "duration_s": _fmt(r.duration_s, 3), "device": r.device,
                   "best_epoch": "" if r.best_epoch is None else r.best_epoch, "reason": r.reason}
            row.update({k: _fmt(v) for k, v in r.metrics.items()})
            row.update({f"param.{k}": v for k, v in r.params.items()})
            writer.writerow(row)
    os.replace(tmp, path)
    return path


def leaderboard(records: Iterable[TrialRecord], top: int = 10) -> list[TrialRecord]:
    done = [r for r in records if r.ok]
    return sorted(done, key=lambda r: -r.score)[:top]


def _fmt(value: float | None, digits: int = 6) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)
