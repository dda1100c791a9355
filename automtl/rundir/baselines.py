"""Single-task baselines of a run and delta-m: did sharing help? (no TensorFlow needed)

``RUN_DIR/baselines.json`` holds, per task, the single-task model's primary
validation metric beside the best multi-task trial's, their signed relative
change and a bootstrap interval of it, and delta-m (Maninis et al., 2019): the
mean over tasks of ``(-1)^l (M_multi - M_single) / |M_single|`` in percent, ``l``
= 1 when lower is better. Positive: the multi-task model is better.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

BASELINES_JSON = "baselines.json"
#: Bootstrap resamples of the validation rows for each task's interval.
BOOTSTRAP = 200
#: Two-sided coverage of that interval.
COVERAGE = 0.90


@dataclass
class TaskBaseline:
    """One task: its single-task model and how the multi-task model compares."""

    task: str
    metric: str
    direction: str
    single: float
    multi: float
    #: signed relative change of the primary metric in percent (positive: the multi-task model is better)
    delta: float | None
    #: bootstrap interval of ``delta`` over the validation rows (COVERAGE), or None
    interval: list[float] | None
    #: "helped", "hurt" or "unclear" (the interval holds 0)
    verdict: str
    #: the baseline's trial number (``auto``: the best multi-task trial's, for the same seed)
    trial: int
    #: its folder, relative to the run folder (a run folder of its own with ``search``)
    folder: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    score: float | None = None
    seconds: float | None = None
    #: the baseline trial's best epoch (a cross-validated baseline is trained for it on every row at export)
    best_epoch: int | None = None


@dataclass
class Baselines:
    """A run's single-task baselines (``mode`` auto or search) against its best trial."""

    mode: str
    best_trial: int
    tasks: list[TaskBaseline]
    delta_m: float | None
    #: single-task trainings this run made for them (apart from the search budget)
    trainings: int = 0
    seconds: float = 0.0

    def task(self, name: str) -> TaskBaseline | None:
        return next((t for t in self.tasks if t.task == name), None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "Baselines":
        tasks = [TaskBaseline(**t) for t in doc.get("tasks", [])]
        return cls(doc["mode"], int(doc["best_trial"]), tasks, doc.get("delta_m"), int(doc.get("trainings", 0)),
                   float(doc.get("seconds", 0.0)))


def relative_change(multi: float, single: float, direction: str) -> float | None:
    """Signed relative change of one metric in percent, positive when ``multi`` is better."""
    if not (math.isfinite(multi) and math.isfinite(single)) or single == 0:
        return None
    sign = 1.0 if direction == "maximize" else -1.0
    return sign * (multi - single) / abs(single) * 100.0


def delta_m(changes: Iterable[float | None]) -> float | None:
    """Maninis et al. (2019): the mean of the tasks' signed relative changes (percent)."""
    values = [c for c in changes if c is not None]
    return sum(values) / len(values) if values else None


def verdict(delta: float | None, interval: list[float] | None) -> str:
    if delta is None:
        return "unclear"
    if interval is None:
        return "helped" if delta > 0 else "hurt" if delta < 0 else "unclear"
    if interval[0] > 0:
        return "helped"
    if interval[1] < 0:
        return "hurt"
    return "unclear"


def write_baselines(run_dir: Path, baselines: Baselines) -> Path:
    path = Path(run_dir) / BASELINES_JSON
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_finite(baselines.to_json()), indent=1, allow_nan=False))
    os.replace(tmp, path)
    return path


def read_baselines(run_dir: Path) -> Baselines | None:
    path = Path(run_dir) / BASELINES_JSON
    if not path.exists():
        return None
    try:
        return Baselines.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError):
        return None


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.1f} %"


def task_sentence(t: TaskBaseline, run_dir: str = "RUN_DIR") -> str:
    """Whether sharing helped this task, by how much, and which model to use, in words."""
    figures = f"{t.metric} {t.multi:.4g} multi-task vs {t.single:.4g} single-task ({_pct(t.delta)}"
    if t.interval is not None:
        figures += f"; {COVERAGE:.0%} interval {t.interval[0]:+.1f} to {t.interval[1]:+.1f} %"
    figures += ")"
    if t.verdict == "helped":
        return f"{t.task}: sharing helped: {figures}. Use the multi-task model."
    if t.verdict == "hurt":
        return (f"{t.task}: sharing hurt: {figures}. If {t.task} matters most, use its single-task model "
                f"(`automtl export {run_dir} --baseline {t.task} --out DIR`).")
    return (f"{t.task}: no clear difference: {figures}, within the noise of the validation rows. "
            "The multi-task model serves every task at once.")


def summary_sentence(b: Baselines) -> str:
    if b.delta_m is None:
        return "delta-m: not available (a baseline metric is zero or missing)"
    helped = [t.task for t in b.tasks if t.verdict == "helped"]
    hurt = [t.task for t in b.tasks if t.verdict == "hurt"]
    if all(t.verdict == "unclear" for t in b.tasks):  # the mean's sign alone is no evidence either way
        words = "no task changed beyond noise"
    else:
        words = ("sharing helped on average" if b.delta_m > 0 else "separate models are better on average"
                 if b.delta_m < 0 else "no difference on average")
    detail = []
    if helped:
        detail.append(f"clearly better with sharing: {', '.join(helped)}")
    if hurt:
        detail.append(f"clearly better alone: {', '.join(hurt)}")
    return (f"delta-m {b.delta_m:+.2f} % ({words}; Maninis et al. 2019, positive = the multi-task model is better"
            + (f"; {'; '.join(detail)}" if detail else "") + ")")
