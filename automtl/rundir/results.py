"""Trial records -> ``trials.csv``, ``trials.json`` and the leaderboard (no TensorFlow needed)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from automtl.core.trial import TrialRecord, top_fidelity
from automtl.errors import AutomtlError

TRIALS_JSON_FORMAT = "automtl-trials/1"

BASE_COLUMNS = ["number", "state", "score", "duration_s", "device", "best_epoch"]


def columns(records: Sequence[TrialRecord]) -> list[str]:
    metric_cols = sorted({k for r in records for k in r.metrics})
    param_cols = sorted({k for r in records for k in r.params})
    score_cols = [f"score.{t}" for t in sorted({t for r in records for t in r.scores})]
    # The Pareto-front mark exists only in multi-objective runs.
    pareto = ["pareto"] if any(r.pareto is not None for r in records) else []
    return BASE_COLUMNS[:3] + pareto + BASE_COLUMNS[3:] + score_cols + metric_cols + [f"param.{p}" for p in param_cols] + ["reason"]


def write_trials_csv(records: Sequence[TrialRecord], path: Path) -> Path:
    """Rewrite the table atomically after every trial, so a crash loses nothing finished."""
    cols = columns(records)
    tmp = path.with_suffix(f".csv.{os.getpid()}.tmp")  # several processes may share a run folder
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        for r in sorted(records, key=lambda r: r.number):
            row = {"number": r.number, "state": r.state, "score": _fmt(r.score),
                   "duration_s": _fmt(r.duration_s, 3), "device": r.device,
                   "best_epoch": "" if r.best_epoch is None else r.best_epoch, "reason": r.reason}
            if r.pareto is not None:
                row["pareto"] = "yes" if r.pareto else ""
            row.update({f"score.{t}": _fmt(v) for t, v in r.scores.items()})
            row.update({k: _fmt(v) for k, v in r.metrics.items()})
            row.update({f"param.{k}": v for k, v in r.params.items()})
            writer.writerow(row)
    os.replace(tmp, path)
    return path


def leaderboard(records: Iterable[TrialRecord], top: int = 10) -> list[TrialRecord]:
    done = top_fidelity(list(records))  # a multi-fidelity search ranks its highest rung only
    return sorted(done, key=lambda r: -r.score)[:top]


def _fmt(value: float | None, digits: int = 6) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


@dataclass
class RunTrials:
    """What ``trials.json`` holds: the run's tasks and objective, and every trial record."""

    records: list[TrialRecord]
    tasks: list[dict[str, Any]] = field(default_factory=list)
    objective: str = "mean"
    experiment: str = ""
    #: the run's ensemble (``EnsembleResult.to_json``) and single-task baselines (``Baselines.to_json``)
    ensemble: dict[str, Any] | None = None
    baselines: dict[str, Any] | None = None

    @property
    def primaries(self) -> dict[str, str]:
        return {t["name"]: t["primary_metric"] for t in self.tasks}


def write_trials_json(records: Sequence[TrialRecord], path: Path, *, tasks: Sequence[dict[str, Any]],
                      objective: str, experiment: str, extra: dict[str, Any] | None = None) -> Path:
    """The typed twin of ``trials.csv`` (parameter types kept) that reports and commands read.

    ``extra``: the run's ``ensemble`` and ``baselines``, once the search has finished."""
    doc = {
        "format": TRIALS_JSON_FORMAT,
        "experiment": experiment,
        "objective": objective,
        "tasks": list(tasks),
        **finite(extra or {}),
        "trials": [finite(dataclasses.asdict(r)) for r in sorted(records, key=lambda r: r.number)],
    }
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=False, default=str))
    os.replace(tmp, path)
    return path


def read_trials(run_dir: Path) -> RunTrials:
    """Load ``RUN_DIR/trials.json``, with a clear error when the folder is not a run."""
    path = Path(run_dir) / "trials.json"
    if not Path(run_dir).is_dir():
        raise AutomtlError(f"run folder not found: {run_dir}")
    if not path.exists():
        raise AutomtlError(f"{run_dir}: no trials.json here; expected a run folder written by `automtl search`")
    try:
        doc = json.loads(path.read_text())
        fields = {f.name for f in dataclasses.fields(TrialRecord)}
        records = [TrialRecord(**{k: v for k, v in t.items() if k in fields}) for t in doc["trials"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise AutomtlError(f"{path}: not a readable trials file: {exc}") from None
    return RunTrials(records, doc.get("tasks", []), doc.get("objective", "mean"), doc.get("experiment", ""),
                     doc.get("ensemble"), doc.get("baselines"))


def finite(value: Any) -> Any:
    """NaN and infinities become None, so the JSON is strict and parses anywhere."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
