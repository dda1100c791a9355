"""Whether rerunning a search would do nothing: every trial run, every output written and up to date.

A rerun of a finished search resumes the study, finds no trial left, and
would then re-export best/, reselect the ensemble and rewrite the report
(TensorFlow started, tens of seconds on a busy machine). When the run folder
shows that all of that is done for the same experiment, the command prints
the run's summary from its files instead, without importing TensorFlow.

Conservative: any doubt (a time budget, a shared or remote study, a
multi-fidelity or Pareto search, a failed or interrupted trial, a changed
experiment, an output older than the trials) means "not finished", and the
search runs as usual.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from automtl.config import DEFAULT_TRIALS, Experiment
from automtl.core.trial import TrialRecord
from automtl.rundir.results import RunTrials, leaderboard, read_trials

#: The experiment's sections that decide what a run's trials and outputs are (``search`` is checked item by item).
_SAME = ("data", "inputs", "tasks")
#: Trial states that use up one of ``--trials`` for sure (a failure might be retried, so it is a doubt).
_COUNTED = ("complete", "pruned")


@dataclass
class FinishedRun:
    """What the summary of a finished run shows, read from its folder."""

    run_dir: Path
    run: RunTrials
    best: TrialRecord
    target: int
    ensemble_dir: Path | None
    report: Path | None


def finished_run(exp: Experiment, report: bool) -> FinishedRun | None:
    """The run in ``exp.run_dir`` when a rerun of ``exp`` has nothing left to do, else None."""
    settings, run_dir = exp.search, Path(exp.run_dir)
    if (settings.timeout is not None or settings.storage or settings.objective != "mean"
            or settings.workers not in (1, None) or getattr(settings, "fidelity", "none") == "rows"):
        return None
    if settings.baselines == "search":  # a single-task search per task resumes its own studies
        return None
    try:
        run = read_trials(run_dir)
        best_doc = json.loads((run_dir / "best" / "automtl.json").read_text())
        snapshot = yaml.safe_load((run_dir / "experiment.resolved.yaml").read_text())
    except Exception:  # noqa: BLE001 - anything unreadable: let the search look at it properly
        return None
    if not _same_experiment(exp, snapshot):
        return None
    if settings.ensemble != ((snapshot.get("search") or {}).get("ensemble")):
        return None  # another ensemble size than the run selected: the search selects it again
    target = settings.trials or DEFAULT_TRIALS
    records = run.records
    if any(r.state not in _COUNTED for r in records) or sum(r.state in _COUNTED for r in records) < target:
        return None
    top = leaderboard(records, top=1)
    if not top or (best_doc.get("trial") or {}).get("number") != top[0].number:
        return None
    written = (run_dir / "trials.json").stat().st_mtime
    # each format of search.export_formats, by the name best/ records it under (an alias such as
    # "litert" is a doubt: parsing it would load the format plugins, and TensorFlow with them)
    wanted = {f.strip().lower().replace("-", "_") for f in settings.export_formats}
    if not wanted <= set(best_doc.get("formats") or {}) | {"saved_model"}:
        return None
    ensemble_dir = None
    if settings.ensemble != 0 and sum(r.ok for r in records) >= 2:
        ensemble_dir = run_dir / "ensemble"
        if run.ensemble is None or not (ensemble_dir / "automtl.json").is_file():
            return None
    if settings.baselines != "off" and not (run.baselines and run.baselines.get("best_trial") == top[0].number):
        return None
    report_path = None
    if report:
        report_path = run_dir / "report.html"
        if not report_path.is_file() or report_path.stat().st_mtime < written:
            return None
    return FinishedRun(run_dir, run, top[0], target, ensemble_dir, report_path)


def _same_experiment(exp: Experiment, snapshot: Any) -> bool:
    """The experiment's data, inputs and tasks are the ones the run recorded (paths compared resolved)."""
    if not isinstance(snapshot, dict):
        return False
    now = exp.model_dump(mode="json", exclude={"base_dir"})
    now["data"]["train"] = str(exp.path(exp.data.train).resolve())
    if exp.data.valid is not None:
        now["data"]["valid"] = str(exp.path(exp.data.valid).resolve())
    return all(now.get(key) == snapshot.get(key) for key in _SAME)
