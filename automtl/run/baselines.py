"""Single-task baselines, trained after the search through the same trial runner.

- ``auto``: each task retrained alone with the best trial's configuration (same
  trunk, its own head, same epochs, patience, seed and split): T short trainings
  in ``RUN_DIR/baselines/<task>/``, counted apart from the search budget.
- ``search``: one single-task search per task on the same space without the
  multi-task-only parameters, in its own study ``<study>/single/<task>`` in the
  same storage (resumable like the main one); its run folder is
  ``RUN_DIR/baselines/<task>/``.

A single-task experiment is the same experiment with one task, so the models
come from the same plugins and the same seeded split (rows without that task's
label are left out, as :func:`automtl.data.prepare.prepare` does for any run).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from automtl.config import DEFAULT_TRIALS
from automtl.core import registry
from automtl.core.trial import TrialRecord, trial_dir
from automtl.run.ensemble import VALID_PRED, FoldRows, evaluate_task, load_valid_pred
from automtl.run.phases import Checked, Search, prepare_search, run_trials
from automtl.rundir.baselines import (
    BOOTSTRAP, COVERAGE, Baselines, TaskBaseline, delta_m, read_baselines, relative_change, verdict, write_baselines,
)
from automtl.space import SearchSpace

if TYPE_CHECKING:
    from automtl.plugin_base import Task
    from automtl.data.arrays import Arrays


# -- which parameters only matter with several tasks ------------------------------------------
def _split_name(name: str, tasks: Sequence[str]) -> tuple[str, str | None]:
    """``head.digit.units`` -> ``("head.units", "digit")``; a global name -> ``(name, None)``."""
    from automtl.space import expand

    for base in registry.per_task_specs():
        for task in tasks:
            if expand(base, task) == name:
                return base, task
    return name, None


def multi_task_only(name: str, tasks: Sequence[str]) -> bool:
    """Declared ``multi_task`` (loss weighting, task sampling): meaningless for one task alone."""
    base, task = _split_name(name, tasks)
    specs = registry.per_task_specs() if task is not None else registry.parameter_specs()
    spec = specs.get(base)
    return bool(spec is not None and spec.multi_task)


def single_task_params(params: dict[str, Any], task: str, tasks: Sequence[str],
                       foreign: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A trial's values for ``task`` alone: other tasks', multi-task-only and ``foreign`` parameters
    (declared only by the plugins of the other tasks) dropped."""
    out = {}
    for name, value in params.items():
        _, owner = _split_name(name, tasks)
        if (owner is None or owner == task) and not multi_task_only(name, tasks) and name not in (foreign or {}):
            out[name] = value
    return out


def single_task_space(space: SearchSpace, tasks: Sequence[str], foreign: Mapping[str, Any] | None = None) -> SearchSpace:
    """The space without its multi-task-only parameters, nor ``foreign`` ones (declared by the plugins of
    tasks left out, e.g. classification's ``label_smoothing`` in a regression task's search: they
    would be sampled and change nothing); a condition on a dropped one holds when the dropped
    parameter's default satisfies it (else the conditioned parameter goes too)."""
    foreign = dict(foreign or {})
    specs = {**foreign, **registry.parameter_specs(), **registry.per_task_specs()}
    dropped = {p.name for p in space.params if multi_task_only(p.name, tasks) or p.name in foreign}
    kept = []
    for p in space.params:
        if p.name in dropped:
            continue
        conditions = []
        ok = True
        for c in p.when:
            if c.parent in dropped:
                default = specs.get(_split_name(c.parent, tasks)[0])
                ok = ok and default is not None and default.default in c.values
            else:
                conditions.append(c)
        if ok:
            kept.append(type(p)(**{**p.__dict__, "when": tuple(conditions)}))
        else:
            dropped.add(p.name)
    names = {p.name for p in kept}
    start = [point for point in ({k: v for k, v in pt.items() if k in names} for pt in space.start) if point]
    return SearchSpace(space.source, kept, space.description, start)


# -- comparing a baseline with the best trial -------------------------------------------------
def _rows(valid: "Arrays", task: str) -> np.ndarray:
    return np.flatnonzero(valid.mask[task].reshape(len(valid), -1).any(axis=1))


#: Time a task's bootstrap interval may take, and the fewest draws worth an interval.
BOOTSTRAP_SECONDS = 10.0
MIN_RESAMPLES = 50


@dataclass
class _Part:
    """Rows scored together: a validation split, or one fold's validation rows (in that fold's scale)."""

    task: "Task"
    y: np.ndarray
    mask: np.ndarray
    multi: np.ndarray
    single: np.ndarray


def _groups(task: str, valid: "Arrays | FoldRows") -> list[tuple["Task | None", "Arrays"]]:
    if isinstance(valid, FoldRows):
        return [(tasks[task], rows) for tasks, rows in valid.folds]
    return [(None, valid)]


def _aligned(task: "Task", valid: "Arrays | FoldRows", multi_pred: np.ndarray, single_valid: "Arrays | FoldRows",
             single_pred: np.ndarray) -> list[_Part] | None:
    """The rows labelled for ``task`` with both outputs, per split or fold; None when the single-task
    rows are not those rows in the same order (then only the whole figures compare)."""
    multi_groups, single_groups = _groups(task.name, valid), _groups(task.name, single_valid)
    if len(multi_groups) != len(single_groups):
        return None
    parts, m_start, s_start = [], 0, 0
    for (fitted, rows_m), (_, rows_s) in zip(multi_groups, single_groups):
        rows = _rows(rows_m, task.name)
        pm = np.asarray(multi_pred[m_start : m_start + len(rows_m)], np.float64)[rows]
        ps = np.asarray(single_pred[s_start : s_start + len(rows_s)], np.float64)
        m_start, s_start = m_start + len(rows_m), s_start + len(rows_s)
        if len(rows_s) != len(rows) or len(ps) != len(rows):
            return None
        parts.append(_Part(fitted or task, rows_m.y[task.name][rows], rows_m.mask[task.name][rows], pm, ps))
    return parts


def _metric(parts: Sequence[_Part], metric: str, which: str, draw: Sequence[np.ndarray] | None = None) -> float:
    """Mean over the parts (one for a split; the folds' mean, as the trials are scored) of ``metric``."""
    values = []
    for i, p in enumerate(parts):
        idx = slice(None) if draw is None else draw[i]
        values.append(float(p.task.evaluate(p.y[idx], p.mask[idx], getattr(p, which)[idx])[metric]))
    return float(np.mean(values))


def compare(task: "Task", valid: "Arrays | FoldRows", multi_pred: np.ndarray, single_valid: "Arrays | FoldRows",
            single_pred: np.ndarray, seed: int = 0,
            resamples: int = BOOTSTRAP) -> tuple[float, float, float | None, list[float] | None]:
    """``(multi, single, delta %, bootstrap interval)`` of the primary metric on the rows labelled for
    ``task`` (the single-task validation rows are those rows, in the same order). ``valid`` is a
    split, or a cross-validated run's folds (:class:`FoldRows`: out-of-fold outputs, each fold scored
    in its own scale, the mean over folds; the bootstrap then resamples rows within each fold)."""
    metric = task.primary_metric
    parts = _aligned(task, valid, multi_pred, single_valid, single_pred)
    if parts is None:  # different rows: compare the full figures only
        multi = evaluate_task(task, valid, multi_pred)[metric]
        single = evaluate_task(task, single_valid, single_pred)[metric]
        return multi, single, relative_change(multi, single, task.direction), None
    started = time.perf_counter()
    multi, single = _metric(parts, metric, "multi"), _metric(parts, metric, "single")
    delta = relative_change(multi, single, task.direction)
    # A costly metric (detection mAP: ~0.1 s a call) gets the draws that fit in BOOTSTRAP_SECONDS
    resamples = min(resamples, int(BOOTSTRAP_SECONDS / max(time.perf_counter() - started, 1e-6)))
    if delta is None or sum(len(p.y) for p in parts) < 10 or resamples < MIN_RESAMPLES:
        return multi, single, delta, None
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        idx = [rng.integers(0, len(p.y), len(p.y)) for p in parts]
        d = relative_change(_metric(parts, metric, "multi", idx), _metric(parts, metric, "single", idx), task.direction)
        if d is not None and np.isfinite(d):
            draws.append(d)
    if len(draws) < resamples // 2:
        return multi, single, delta, None
    tail = (1 - COVERAGE) / 2 * 100
    return multi, single, delta, [float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))]


# -- running them ------------------------------------------------------------------------------
@dataclass
class _Handle:
    number: int
    params: dict[str, Any]
    #: the best trial's epoch budget: what a time budget planned it to (None: the search's ``epochs``)
    epochs: int | None = None

    def report(self, epoch: int, value: float) -> None:
        """Baselines are never pruned."""


def baseline_folder(run_dir: Path, task: str) -> Path:
    return Path(run_dir) / "baselines" / task


def run_baselines(s: "Search", best: TrialRecord) -> Baselines | None:
    """The run's baselines (``search.baselines``), written to ``RUN_DIR/baselines.json``."""
    mode = s.exp.search.baselines
    tasks = s.checked.tasks
    if mode == "off" or len(tasks) < 2:
        return None
    started = time.perf_counter()
    previous = read_baselines(s.run_dir)
    results: list[TaskBaseline] = []
    trainings = 0
    for task in tasks:
        if mode == "auto":
            entry, trained = _auto(s, best, task, previous)
        else:
            entry, trained = _search(s, best, task)
        trainings += trained
        if entry is not None:
            results.append(entry)
    if not results:
        return None
    out = Baselines(mode, best.number, results, delta_m(t.delta for t in results), trainings,
                    round(time.perf_counter() - started, 2))
    write_baselines(s.run_dir, out)
    return out


def _entry(s: "Search", best: TrialRecord, task: "Task", record: TrialRecord, folder: Path) -> TaskBaseline | None:
    multi_pred = load_valid_pred(s.run_dir, best.number)
    single_pred = load_valid_pred(folder, record.number)
    single = s.prepared.only(task.name)
    metric = task.primary_metric
    if multi_pred is None or single_pred is None:
        m_value = best.metrics.get(f"{task.name}.{metric}", float("nan"))
        s_value = record.metrics.get(f"{task.name}.{metric}", float("nan"))
        delta, interval = relative_change(m_value, s_value, task.direction), None
    else:  # cross-validated: both trials' out-of-fold outputs, every training row labelled for the task
        valid = FoldRows.of(s.prepared.folds) if s.prepared.folds else s.prepared.valid
        single_valid = FoldRows.of(single.folds) if single.folds else single.valid
        m_value, s_value, delta, interval = compare(task, valid, multi_pred[task.name], single_valid,
                                                    single_pred[task.name], seed=s.exp.search.seed)
    return TaskBaseline(
        task=task.name, metric=metric, direction=task.direction, single=float(s_value), multi=float(m_value),
        delta=delta, interval=interval, verdict=verdict(delta, interval), trial=record.number,
        folder=str(folder.relative_to(s.run_dir)), params=dict(record.params), metrics=dict(record.metrics),
        score=record.score, seconds=record.duration_s, best_epoch=record.best_epoch,
    )


def foreign_parameters(s: "Search", task: str) -> dict[str, Any]:
    """Parameters declared by the plugins of the other tasks only (none of ``task``'s nor the inputs')."""
    from automtl.space import plugin_parameters

    known = plugin_parameters((*s.checked.encoders, *s.checked.tasks))
    mine = plugin_parameters((*s.checked.encoders, *(t for t in s.checked.tasks if t.name == task)))
    return {k: v for k, v in known.items() if k not in mine}


def _auto(s: "Search", best: TrialRecord, task: "Task", previous: Baselines | None) -> tuple[TaskBaseline | None, int]:
    folder = baseline_folder(s.run_dir, task.name)
    names = [t.name for t in s.checked.tasks]
    params = single_task_params(best.params, task.name, names, foreign_parameters(s, task.name))
    old = previous.task(task.name) if previous is not None and previous.mode == "auto" else None
    kept = VALID_PRED if s.prepared.folds else "model.keras"  # a cross-validated trial keeps no model
    if (old is not None and previous.best_trial == best.number and old.params == params
            and (trial_dir(folder, best.number) / kept).exists()):
        record = TrialRecord(best.number, "complete", old.score, params, old.metrics, old.seconds,
                             best_epoch=old.best_epoch)  # (a cross-validated baseline's export trains for it)
        return _entry(s, best, task, record, folder), 0  # a resumed search: this baseline is done
    started = time.perf_counter()
    planned = best.cost.get("planned_epochs")  # same epochs as the best trial, planned down under a time budget
    outcome = _train(s, task.name, folder, _Handle(best.number, params, int(planned) if planned else None))
    record = TrialRecord(best.number, "complete", outcome.score, params, outcome.metrics,
                         round(time.perf_counter() - started, 3), outcome.device, best_epoch=outcome.best_epoch,
                         scores=outcome.scores)
    entry = _entry(s, best, task, record, folder)
    folds = len(s.prepared.folds)
    if not s.quiet and entry is not None:
        how = f" (out-of-fold, {folds} folds)" if folds else ""
        s.console.print(f"baseline '{task.name}' alone (trial #{best.number}'s configuration): {entry.metric} "
                        f"{entry.single:.4g}{how} in {record.duration_s:.1f} s", highlight=False)
    return entry, max(1, folds)


def _train(s: "Search", task: str, folder: Path, handle: _Handle) -> Any:
    """One single-task training: in this process, or in a trial process when this one keeps off the GPUs."""
    if s.role.kind == "single":
        from automtl.training.runner import TrialRunner

        return TrialRunner(s.prepared.only(task), folder, deadline=s.phase_deadline or s.deadline)(handle)
    from automtl.run.trial_process import ProcessTrialRunner

    exp = s.exp.model_copy(update={"tasks": [c for c in s.exp.tasks if c.name == task]})
    runner = ProcessTrialRunner(exp, folder, 1, deadline=s.phase_deadline or s.deadline)
    try:
        return runner(handle)
    finally:
        runner.close()


def single_task_trials(settings: Any, tasks: int) -> int:
    """Trials of each single-task search (``baselines: search``): ``search.baseline_trials``, else the
    main search's trials (:data:`~automtl.config.DEFAULT_TRIALS` when it has none: a timed search) per task."""
    return settings.baseline_trials or max(1, (settings.trials or DEFAULT_TRIALS) // tasks)


def _search(s: "Search", best: TrialRecord, task: "Task") -> tuple[TaskBaseline | None, int]:
    """A single-task search for ``task`` in study ``<study>/single/<task>`` of the same storage."""
    from dataclasses import replace

    from automtl import backends
    from automtl.space import AUTO, load_space, parse_space, plugin_parameters

    settings = s.exp.search
    folder = baseline_folder(s.run_dir, task.name)
    n_trials = single_task_trials(settings, len(s.checked.tasks))
    # Optuna: a study of the same storage; Keras Tuner names a project folder (a name, not a path)
    # inside the baseline's own run folder.
    study = (f"{s.exp.study_name}/single/{task.name}" if backends.spec(settings.backend).optuna_study
             else f"{s.exp.study_name}-single-{task.name}")
    update: dict[str, Any] = {"trials": n_trials, "study": study,
                              "out": folder.resolve(), "baselines": "off", "ensemble": 0, "refit": False,
                              "objective": "mean",
                              "latency_objective": False, "export_formats": ["saved_model"]}
    storage = getattr(s.backend, "storage_url", None)
    if storage is not None:
        update["storage"] = storage
    if settings.objective == "pareto":
        update["algorithm"] = backends.spec(settings.backend).default_algorithm
    exp = s.exp.model_copy(update={"name": f"{s.exp.name}-single-{task.name}",
                                   "tasks": [c for c in s.exp.tasks if c.name == task.name],
                                   "search": settings.model_copy(update=update)})
    # The same fitted plugins and seeded split as the main search, on the rows labelled for this task.
    prepared = replace(s.prepared.only(task.name), experiment=exp)
    # The main search's space (every plugin's parameters known), for this task alone.
    known = plugin_parameters((*s.checked.encoders, *s.checked.tasks))
    foreign = foreign_parameters(s, task.name)
    if s.checked.space_path is not None:
        space = load_space(s.checked.space_path, [task.name], known)
    else:  # space: auto -- the space the main search chose
        space = parse_space(s.checked.space_raw, AUTO, [task.name], known)
    checked = Checked(exp, prepared.encoders, prepared.tasks, single_task_space(space, [task.name], foreign),
                      s.checked.space_path, prepared, space_raw=s.checked.space_raw, formats=["saved_model"])
    if not s.quiet:
        s.console.print(f"single-task search for '{task.name}': {n_trials} trial(s), study "
                        f"'{exp.study_name}'", highlight=False)
    search = prepare_search(checked, s.console, quiet=True)
    before = sum(r.state in ("complete", "pruned", "fail") for r in search.backend.records())
    run_trials(search)
    records = search.backend.records()
    search.write_tables(records)
    trained = sum(r.state in ("complete", "pruned", "fail") for r in records) - before
    found = search.backend.best()
    if found is None:
        s.console.print(f"[yellow]single-task search for '{task.name}': no trial completed; no baseline[/]")
        return None, trained
    entry = _entry(s, best, task, found, folder)
    if not s.quiet and entry is not None:
        s.console.print(f"baseline '{task.name}' (single-task search, best of {len(records)} trial(s): "
                        f"#{found.number}): {entry.metric} {entry.single:.4g}", highlight=False)
    return entry, trained
