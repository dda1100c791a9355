"""One search, in phases: check the files, prepare the data, run the trials, finish.

- **check** (no TensorFlow): the plugins' options, the search space, the run
  folder (who owns it) and the backend's settings (its storage), then the
  data: read, split, fitted plugins and arrays (numpy and pandas only), so
  that every bad input is refused in about a second and nothing is written;
- **prepare**: processes and devices, the run folder, the backend, and only
  once the backend opened fine the run's snapshot and owner record;
- **run**: the backend's trials in this process, or search workers sharing
  the study (:mod:`automtl.run.parallel`);
- **finish**: the tables, the export of the best trial, the report, the summary.

Which of these a process does is its :class:`Role`. Words used throughout:
a *trial process* trains trials for a search process
(:mod:`automtl.run.trial_process`); a *search worker* is one of ``--workers N``
search processes on one shared study; a *Keras Tuner worker* runs the trials
a Keras Tuner chief hands out.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from automtl.config import Experiment
from automtl.core.trial import TrialRecord, trial_dir
from automtl.data.prepare import Prepared, instantiate, prepare
from automtl.data.split import write_split
from automtl.errors import ConfigError, SearchStopped
from automtl.run.budget import PLANNED_TRIALS, Budget
from automtl.run.faults import FailureStreak
from automtl.run.progress import SearchProgress
from automtl.run.summary import SearchSummary, print_summary
from automtl.rundir.folder import check_out_folder, check_owner, ensure_writable, record_owner, write_snapshot
from automtl.rundir.results import write_trials_csv, write_trials_json
from automtl.space import AUTO, SearchSpace, load_space, parse_space, plugin_parameters, resolve_space_path


@dataclass(frozen=True)
class Role:
    """What this process does in the search.

    ``single``: runs the trials and records, exports and reports; ``coordinator``:
    starts search workers and records, exports and reports, but trains nothing;
    ``search worker``: one of ``--workers N``, runs trials on the shared study
    and leaves the rest to the coordinator; ``keras tuner worker``: runs the
    trials a Keras Tuner chief hands out (the chief records and exports).
    """

    kind: str

    @property
    def runs_trials(self) -> bool:
        return self.kind != "coordinator"

    @property
    def writes_tables(self) -> bool:
        """Keeps ``trials.csv``/``trials.json`` current (search workers too: a live view of the shared study)."""
        return self.kind != "keras tuner worker"

    @property
    def records(self) -> bool:
        """Writes the run's snapshot, exports the best trial and writes the report."""
        return self.kind in ("single", "coordinator")


@dataclass
class Checked:
    """The user's files, checked before TensorFlow loads, and the data they describe."""

    exp: Experiment
    encoders: list
    tasks: list
    #: built from the plugins and the data's size for ``space: auto``
    space: SearchSpace | None
    #: None for ``space: auto``
    space_path: Path | None
    prepared: Prepared
    #: the ``auto`` space as written to the run's ``space.yaml``
    space_raw: dict[str, Any] | None = None
    #: formats of ``best/`` (``search.export_formats``), their optional dependencies checked
    formats: list[str] = field(default_factory=lambda: ["saved_model"])
    #: the folds were chosen for a small table (:func:`automtl.data.split.auto_folds`), not by the experiment
    auto_folds: bool = False


@dataclass
class Search:
    """One search in progress: what every phase after the check reads and writes."""

    checked: Checked
    role: Role
    console: Console
    quiet: bool
    prepared: Prepared
    run_dir: Path
    backend: Any
    progress: SearchProgress
    workers: int = 1
    gpus: list[str] = field(default_factory=list)
    #: the time budget: the command's deadline and the trials' share of it (no deadline without --timeout)
    budget: Budget = field(default_factory=lambda: Budget(None, None, 1, 1))
    #: the deadline of the phase that trains now (the baselines), earlier than the command's when phases follow
    phase_deadline: float | None = None
    #: the fractions of the training rows trials train on (:mod:`automtl.run.fidelity`); [1.0]: all rows
    rungs: list[float] = field(default_factory=lambda: [1.0])

    @property
    def deadline(self) -> float | None:
        """When the whole command ends (``time.time()`` seconds; ``--timeout`` after it started), or None."""
        return self.budget.deadline

    @deadline.setter
    def deadline(self, value: float | None) -> None:
        self.budget.deadline = value

    @property
    def exp(self) -> Experiment:
        return self.checked.exp

    @property
    def primaries(self) -> dict[str, str]:
        return {t.name: t.primary_metric for t in self.checked.tasks}

    def write_tables(self, records: list[TrialRecord], extra: dict[str, Any] | None = None) -> None:
        if not self.role.writes_tables:
            return
        tasks = [{"name": t.name, "type": t.type_name, "primary_metric": t.primary_metric, "direction": t.direction,
                  "importance": self.prepared.importance.get(t.name, 1.0)} for t in self.checked.tasks]
        write_trials_csv(records, self.run_dir / "trials.csv")
        write_trials_json(records, self.run_dir / "trials.json", tasks=tasks,
                          objective=self.exp.search.objective, experiment=self.exp.name, extra=extra)


def run_search(exp: Experiment, console: Console | None = None, quiet: bool = False,
               report: bool = True, worker: bool = False, started: float | None = None) -> SearchSummary:
    """One search; ``worker``: this process is a search worker of ``--workers N`` (the coordinator exports).

    ``started``: when the command started (``time.time()``), where ``--timeout`` counts from (default: now).
    """
    started = time.time() if started is None else started
    return run_checked(check_files(exp, worker=worker), console, quiet, report, worker, started=started)


def run_checked(checked: "Checked", console: Console | None = None, quiet: bool = False,
                report: bool = True, worker: bool = False, started: float | None = None) -> SearchSummary:
    """The phases after the check (the CLI loads TensorFlow in between); ``started`` as for :func:`run_search`."""
    deadline = search_deadline(checked.exp.search.timeout, time.time() if started is None else started, worker)
    search = prepare_search(checked, console or Console(), quiet, search_worker=worker, deadline=deadline)
    interrupted, stopped = run_trials(search)
    return finish(search, interrupted, stopped, report)


def search_deadline(timeout: float | None, started: float, worker: bool = False) -> float | None:
    """``--timeout`` is the whole search's wall time, from the start of the command to the final export.

    A search worker of ``--workers N`` keeps its coordinator's deadline.
    """
    from automtl.run.parallel import DEADLINE_ENV

    inherited = os.environ.get(DEADLINE_ENV) if worker else None
    if inherited:
        return float(inherited)
    return None if timeout is None else started + timeout


# -- phase 1: check ---------------------------------------------------------------------------
def check_files(exp: Experiment, worker: bool = False) -> Checked:
    """Everything that can be wrong with the user's input is found here, before TensorFlow loads.

    Nothing is written: the run folder is created, and its snapshot written,
    only once the backend opened fine (a refused rerun leaves the run as it was).
    ``worker``: a search worker, whose coordinator checked the run folder.
    """
    from automtl import backends
    from automtl.export.formats import parse_formats, require_extras

    formats = parse_formats(exp.search.export_formats, "search.export_formats")
    require_extras(formats)
    encoders, tasks = instantiate(exp)
    space, space_path = None, None
    if exp.space != AUTO:  # ``auto`` is built from the plugins (and the data's size) once the data is read
        space_path = resolve_space_path(exp.space, exp.base_dir)
        space = load_space(space_path, [t.name for t in tasks], plugin_parameters((*encoders, *tasks)))
    if not worker:
        check_out_folder(exp.run_dir)
        check_owner(exp, exp.run_dir)
        spec = backends.spec(exp.search.backend)
        spec.check_settings(exp.search, exp.run_dir, exp.study_name)
        if isinstance(exp.search.workers, int) and exp.search.workers > 1 and not spec.parallel_workers:
            raise ConfigError(_no_parallel_workers(exp.search.workers, spec))
    _devices_before_tensorflow(exp.search.device)
    exp, auto, table = with_auto_folds(exp)
    # A run folder's recorded split (split.json) is read and checked here; a new one is written by prepare_search.
    prepared = prepare(exp, encoders, tasks, exp.run_dir, table=table)
    checked = Checked(exp, encoders, tasks, space, space_path, prepared, formats=formats, auto_folds=auto)
    if checked.space is None:
        build_auto(checked, len(prepared.train))
    return checked


def with_auto_folds(exp: Experiment) -> tuple[Experiment, bool, Any]:
    """``exp`` with a small table's default cross-validation (:func:`automtl.data.split.auto_folds`)
    resolved, so the run's snapshot, resume, export and retraining all see ``data.folds``; whether it
    was; and the training table when it had to be read to count its rows (else None)."""
    from automtl.data.readers import read_table
    from automtl.data.split import auto_folds, names_split
    from automtl.data.streamed import wants_stream

    settings = exp.search
    tabular_only = all(i.type == "tabular" for i in exp.inputs)
    hyperband = (settings.backend, settings.algorithm) == ("keras-tuner", "hyperband")  # cannot cross-validate
    if names_split(exp.data) or not tabular_only or hyperband or wants_stream(exp.data, exp.path(exp.data.train)):
        return exp, False, None  # (a streamed table is never read whole)
    table = read_table(exp.path(exp.data.train), role="training data")
    folds = auto_folds(exp.data, len(table), tabular_only)
    if folds is None:
        return exp, False, table
    return exp.model_copy(update={"data": exp.data.model_copy(update={"folds": folds})}), True, table


def _no_parallel_workers(workers: Any, spec: Any) -> str:
    return (f"--workers {workers} runs search workers on one shared study; backend '{spec.name}' cannot share one "
            f"this way: it uses {spec.distributed}")


def _devices_before_tensorflow(device: str) -> None:
    """What must hold before TensorFlow starts, should a plugin's data preparation start it (image decoding)."""
    import os

    from automtl.devices import hide_gpus
    from automtl.tfimport import set_tf_log_level

    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    set_tf_log_level()  # TensorFlow reads its C++ log level once, maybe while a plugin decodes images
    if device == "cpu":
        hide_gpus()


def build_auto(checked: Checked, rows: int) -> None:
    """``space: auto``: the space the inputs and tasks pick, for ``rows`` training rows."""
    from automtl.autospace import build_auto_space

    checked.space_raw = build_auto_space(checked.encoders, checked.tasks, rows=rows)
    checked.space = parse_space(checked.space_raw, AUTO, [t.name for t in checked.tasks],
                                plugin_parameters((*checked.encoders, *checked.tasks)))


# -- phase 2: prepare -------------------------------------------------------------------------
def prepare_search(checked: Checked, console: Console, quiet: bool, search_worker: bool = False,
                   deadline: float | None = None) -> Search:
    """Processes and devices, the data, the run folder and the backend; ``deadline``: when the whole
    command ends (``time.time()`` seconds), the start of its :class:`~automtl.run.budget.Budget`."""
    from automtl import backends
    from automtl.devices import configure
    from automtl.run.parallel import resolve_workers

    exp, settings = checked.exp, checked.exp.search
    workers, gpus = (1, []) if search_worker else resolve_workers(settings.workers, settings.device)
    spec = backends.spec(settings.backend)
    if workers > 1 and not spec.parallel_workers:
        raise ConfigError(_no_parallel_workers(settings.workers, spec))
    if workers > 1 and settings.device == "gpu" and not gpus:
        configure("gpu")  # raises the clear "no GPU" error once, before any worker starts
    settings.workers = workers
    role = Role("search worker" if search_worker else "coordinator" if workers > 1 else "single")
    # The coordinator trains nothing itself: keep it off the GPUs its workers use.
    plan = configure(settings.device if role.runs_trials else "cpu",
                     settings.precision if role.runs_trials else "float32")
    prepared = checked.prepared
    rungs = plan_rungs(checked, spec, parallel=workers > 1 or search_worker)
    run_dir = ensure_writable(exp.run_dir)
    objectives = [t.name for t in checked.tasks] + (["latency"] if settings.latency_objective else [])
    backend = backends.create(settings, run_dir, checked.space, exp.study_name, objectives=objectives)
    if backend.is_worker:
        role = Role("keras tuner worker")
    if role.records:  # the backend opened fine: this run is the folder's (its first use records it)
        record_owner(exp, run_dir)
        write_snapshot(exp, checked.space_path, run_dir, checked.space_raw)
        if prepared.split is not None:  # resume, export, trial processes and search workers read the same rows
            write_split(prepared.split, run_dir)
    progress = SearchProgress(console, {t.name: t.primary_metric for t in checked.tasks}, settings.epochs, quiet=quiet)
    search = Search(checked, role, console, quiet, prepared, run_dir, backend, progress, workers, gpus,
                    budget=plan_budget(checked, deadline, search_worker), rungs=rungs)
    backend.base_fidelity = rungs[0]
    progress.budget_note = lambda records: budget_note(search.budget, records)
    if role.records and not quiet:
        _print_start(search, f"{workers} search workers" if workers > 1 else f"device {plan.describe()}")
    return search


def plan_budget(checked: Checked, deadline: float | None, search_worker: bool = False) -> Budget:
    """The time budget of this command: what follows the trials, and so what the reserve is kept for."""
    exp, settings, prepared = checked.exp, checked.exp.search, checked.prepared
    refit = bool(settings.refit and prepared.can_refit)
    rows = len(prepared.train)
    return Budget(
        deadline=deadline, seconds=None if search_worker else settings.timeout, tasks=len(checked.tasks),
        max_epochs=settings.epochs, refit=refit, refit_rows=(rows + prepared.valid_rows) / max(1, rows) if refit else 1.0,
        baselines=settings.baselines == "auto", ensemble=settings.ensemble != 0, folds=len(prepared.folds),
        planned_trials=min(PLANNED_TRIALS, settings.max_trials),
    )


def plan_rungs(checked: Checked, spec: Any, parallel: bool) -> list[float]:
    """The rows trials train on (``search.fidelity``); refused before the run folder changes if impossible."""
    from automtl.run import fidelity

    settings, prepared = checked.exp.search, checked.prepared
    why_not = fidelity.obstacle(spec.promotes, spec.name, len(prepared.folds), settings.objective, parallel)
    return fidelity.rungs_for(settings.fidelity, len(prepared.train), settings.time_is_budget, why_not,
                              all(e.subsample_ranks for e in checked.encoders))


def budget_note(budget: Budget, records: list[TrialRecord]) -> str:
    """Time left for trials and about how many more fit, for the trial lines and the progress bar."""
    left = budget.trials_left(records)
    if left is None:
        return ""
    more = budget.more_trials(records)
    return f"{max(0.0, left):.0f} s left for trials" + (f", about {more} more fit" if more is not None else "")


def _print_start(s: Search, where: str) -> None:
    from automtl.backends.optuna.backend import pruner_startup  # only Optuna prunes
    from automtl.run import fidelity

    exp, settings, tasks, space = s.exp, s.exp.search, s.checked.tasks, s.checked.space
    s.console.print(
        f"[bold]automtl search[/] '{exp.name}': {describe_rows(s)}; "
        f"tasks {', '.join(f'{t.name} ({t.type_name})' for t in tasks)}\n"
        f"space {s.checked.space_path or 'auto (see space.yaml)'} ({len(space.params)} parameters); backend {settings.backend}/{settings.algorithm}"
        + (f", pruner {settings.pruner} (from epoch {settings.pruner_warmup}, after "
           f"{pruner_startup(settings)} completed trials)"
           if settings.pruner not in (None, "none") else ", no pruning")
        + "; " + ("objective pareto (one per task" + (", plus latency" if settings.latency_objective else "") + "); "
                  if settings.objective == "pareto" else "")
        + ("as many trials as fit in the time" if settings.time_is_budget else f"{settings.max_trials} trials")
        + f" x up to {settings.epochs} epochs"
        + (f" x {len(s.prepared.folds)} folds (each trial costs {len(s.prepared.folds)} trainings)"
           if s.prepared.folds else "")
        + (f"; {s.budget.describe()}" if s.budget.describe() else "")
        + (f"; {fidelity.describe(s.rungs, len(s.prepared.train))}" if len(s.rungs) > 1 else "")
        + f"; {where}\nrun folder {s.run_dir}",
        highlight=False,
    )


def describe_rows(s: Search) -> str:
    """How the data is split, in a few words (rows, groups, folds)."""
    p, data = s.prepared, s.exp.data
    rule = data.group_rule
    grouped = ""
    if rule is not None and p.split is not None and p.split.groups:
        n_groups = sum(len(g) for g in p.split.groups) if p.folds else None
        how = f"'{rule.column}'" + (f" (pattern {rule.pattern!r})" if rule.pattern else "")
        grouped = (f", grouped by {how}: {n_groups} groups" if n_groups is not None
                   else f", grouped by {how}: {len(p.split.groups[0])} groups validate")
    if p.folds:
        sizes = [len(f.valid) for f in p.folds]
        each = f"{min(sizes)}" if min(sizes) == max(sizes) else f"{min(sizes)}-{max(sizes)}"
        why = " (a small table: cross-validated by default; set data.valid_fraction for a hold-out)" \
            if s.checked.auto_folds else ""
        return (f"{len(p.train)} training rows in {len(p.folds)} cross-validation folds ({each} validate in each)"
                f"{grouped}{why}")
    return f"{len(p.train)} training / {p.valid_rows} validation rows{grouped}"


# -- phase 3: run -----------------------------------------------------------------------------
def run_trials(s: Search) -> tuple[bool, str | None]:
    """The backend's trials, here or in search workers; returns ``(interrupted, why it stopped early)``.

    Under a time budget each trial gets the trials' deadline as measured so far
    (:meth:`Budget.trial_deadline`) and the cost model of the finished trials,
    and no trial starts once even the cheapest so far would not fit.
    """
    from automtl.run.fidelity import last_call, promotions

    settings, budget = s.exp.search, s.budget
    finished = s.backend.records()  # the study's trials so far (a resumed study's too), kept current by on_trial
    done_before = sum(r.state in ("complete", "pruned", "fail") for r in finished)
    if done_before and s.role.records and not s.quiet:
        s.console.print(f"resuming study '{s.exp.study_name}': {done_before} finished trial(s) kept")
    best_before = s.backend.best()
    if best_before is not None:  # "new best" marks compare with the resumed study's best
        s.progress.best = best_before.score
    streak = FailureStreak()

    def on_trial(record: TrialRecord) -> None:
        finished[:] = s.backend.records()
        if len(s.rungs) > 1:  # multi-fidelity: the best of each rung run again on more rows
            queued = promotions(finished, s.rungs)
            final = last_call(finished, s.rungs, budget.trials_left(finished))
            if final is not None:  # before the time runs out, the best so far on all rows
                queued = [final] + [q for q in queued if q[0].number != final[0].number]
            for parent, fraction in queued:
                s.backend.promote(parent, fraction)
        s.progress.trial(record, finished)
        s.write_tables(finished)
        streak.add(record)  # ten failures in a row stop the search

    runner = None
    interrupted, stopped = False, None

    def objective(handle: Any) -> Any:
        """The runner, with the deadline and the cost model of the trials finished so far."""
        runner.deadline = budget.trial_deadline(finished)
        model = budget.cost_model(finished)
        if model is not None:
            handle.cost_model = model.to_json()
        share = budget.allowance(finished)
        if share is not None:
            handle.seconds = share
        return runner(handle)

    def time_left() -> float | None:
        left = budget.trials_left(finished)
        if left is not None and left <= 0 and s.role.records and not s.quiet and not finished:
            s.console.print(f"[yellow]the time budget ({settings.timeout or 0:g} s) was used up before the first trial "
                            "started[/]", highlight=False)
        return left

    left = time_left()
    if left is not None and left <= 0:
        return False, None
    try:
        if s.role.runs_trials:
            runner = make_runner(s.exp, s.prepared, s.run_dir, s.progress, budget.trial_deadline(finished))
            left = time_left()  # starting a trial process takes a while
            if left is None or left > 0:
                s.progress.start(None if settings.time_is_budget else settings.max_trials,
                                 min(done_before, settings.max_trials))
                s.backend.optimize(objective, settings.max_trials,
                                   None if budget.deadline is None else (lambda: budget.trials_left(finished)),
                                   on_trial)
        else:
            from automtl.run.parallel import run_workers

            outcome = run_workers(s.exp, s.run_dir, s.backend.storage_url, s.workers, s.gpus, s.console, s.quiet,
                                  deadline=budget.trial_deadline(finished))
            interrupted, stopped = outcome.interrupted, outcome.stopped
    except KeyboardInterrupt:
        interrupted = True
        if s.role.records:
            s.console.print("[yellow]interrupted: keeping finished trials and exporting the best so far[/]")
    except SearchStopped as exc:
        stopped = str(exc)
        if s.role.records:
            s.console.print(f"[red]stopped:[/] {stopped}", highlight=False, soft_wrap=True)
    finally:
        s.progress.close()
        if hasattr(runner, "close"):
            runner.close()
    return interrupted, stopped


def make_runner(exp: Experiment, prepared: Any, run_dir: Path, progress: SearchProgress,
                deadline: float | None = None) -> Any:
    """Trials in a recycled trial process (bounded memory, crash isolation), or in this process.

    ``deadline`` reaches the trial wherever it trains: it stops at the end of
    the first epoch past it and keeps its best epoch.
    """
    if exp.search.trials_per_process > 0:
        from automtl.run.trial_process import ProcessTrialRunner

        runner = ProcessTrialRunner(exp, run_dir, exp.search.trials_per_process, on_epoch=progress.epoch,
                                    deadline=deadline)
        runner.warm_up()
        return runner
    from automtl.training.runner import TrialRunner

    return TrialRunner(prepared, run_dir, on_epoch=lambda n, r: progress.epoch(n, r.epoch, r.objective),
                       deadline=deadline)


# -- phase 4: finish --------------------------------------------------------------------------
def finish(s: Search, interrupted: bool, stopped: str | None, report: bool) -> SearchSummary:
    """Tables, the export of the best trial and the report (by the process that records), then the summary."""
    records = s.backend.records()
    if not s.role.records:
        if s.role.kind == "keras tuner worker" and not s.quiet:
            s.console.print(f"worker done: ran {len(records)} trial(s); the chief writes trials.csv and exports "
                            "the best model", highlight=False)
        best = s.backend.best() if s.role.kind == "keras tuner worker" else None
        return SearchSummary(s.run_dir, records, best, None, interrupted, stopped=stopped, worker=True)
    s.write_tables(records)
    best = s.backend.best()
    baselines, ensemble, notes = None, None, []
    # (a cross-validated trial has no model yet: baselines compare out-of-fold outputs, the
    # ensemble trains its members on every row when it is exported)
    trained_here = best is not None and (bool(s.prepared.folds)
                                         or (trial_dir(s.run_dir, best.number) / "model.keras").exists())
    if best is not None and interrupted:
        notes.append("baselines and ensemble skipped (interrupted); rerun the same command to add them")
    elif trained_here:
        baselines = _baselines(s, best, notes)
    extra = {"baselines": baselines.to_json()} if baselines is not None else {}
    wants_ensemble = s.exp.search.ensemble != 0 and sum(r.ok for r in records) >= 2
    summary = SearchSummary(s.run_dir, records, best, export_best(s, best, extra, ensemble=wants_ensemble),
                            interrupted, stopped=stopped, baselines=baselines, notes=notes)
    if trained_here and not interrupted:
        # selected once best/ is out: the time budget then knows what an export costs here
        ensemble = _ensemble(s, records, notes)
    if ensemble is not None:
        summary.ensemble, summary.ensemble_dir = ensemble, _export_ensemble(s, ensemble, extra, notes)
        extra["ensemble"] = ensemble.to_json()
    if extra:
        s.write_tables(records, extra)
    if report and any(r.ok for r in records):
        summary.report = _write_report(s.run_dir, s.console)
    print_summary(s.console, summary, s.primaries)
    return summary


def _baselines(s: Search, best: TrialRecord, notes: list[str]) -> Any:
    """Single-task baselines (``search.baselines``); a failure costs the user only the baselines."""
    from automtl.run.baselines import run_baselines

    records = s.backend.records()
    fits, cost = s.budget.fits("baselines", records, after=AFTER_BASELINES)
    if s.deadline is not None and s.exp.search.baselines != "off" and (not fits or time.time() >= s.deadline):
        left = max(0.0, s.deadline - time.time())
        notes.append(f"no single-task baselines: they would take about {cost:.0f} s, and {left:.0f} s of the time "
                     "budget (--timeout) are left for the ensemble, refit and export; rerun the same command with "
                     "time left to add them")
        return None
    s.phase_deadline = s.budget.phase_deadline(records, after=AFTER_BASELINES)
    try:
        return run_baselines(s, best)
    except (KeyboardInterrupt, SearchStopped):
        notes.append("baselines interrupted; rerun the same command to add them")
    except Exception as exc:  # noqa: BLE001 - the search itself is done and kept
        notes.append(f"could not train the single-task baselines: {type(exc).__name__}: {exc}")
    finally:
        s.phase_deadline = None
    return None


#: Under a time budget a phase runs when it fits with the phases still to come that matter more:
#: the export of best/ first, then the ensemble (selected after it), the refit, and the baselines last.
AFTER_BASELINES = ("ensemble", "refit", "export")


def _ensemble(s: Search, records: list[TrialRecord], notes: list[str]) -> Any:
    """Greedy ensemble selection over the completed trials (``search.ensemble``)."""
    from automtl.run.ensemble import FoldRows, select_for_run

    fits, cost = s.budget.fits("ensemble", records)
    if s.deadline is not None and s.exp.search.ensemble != 0 and not fits:
        left = max(0.0, s.deadline - time.time())
        notes.append(f"no ensemble: its export would take about {cost:.0f} s"
                     + (" (a cross-validated run's members each train once more on every row)" if s.prepared.folds
                        else "") + f", and {left:.0f} s of the time budget (--timeout) are left")
        return None
    # cross-validated: selected on every training row's out-of-fold outputs
    valid = FoldRows.of(s.prepared.folds) if s.prepared.folds else s.prepared.valid
    try:
        result, why = select_for_run(s.run_dir, s.checked.tasks, valid, s.prepared.importance, records,
                                     s.exp.search.ensemble)
    except Exception as exc:  # noqa: BLE001
        notes.append(f"could not select an ensemble: {type(exc).__name__}: {exc}")
        return None
    if result is None:
        if s.exp.search.ensemble != 0:
            notes.append(why)
        return None
    notes.extend(result.notes)
    return result


def _export_ensemble(s: Search, ensemble: Any, extra: dict[str, Any], notes: list[str]) -> Path | None:
    from automtl.export.ensemble import export_ensemble

    try:
        if s.prepared.folds:  # no fold model is kept: each member is trained on every row, as best/ is
            from automtl.run.export_trial import trial_model

            say = None if s.quiet else lambda m: s.console.print(m, highlight=False)
            by_number = {r.number: r for r in s.backend.records()}
            for m in ensemble.members:
                trial_model(s.run_dir, by_number[int(m["trial"])], s.prepared, say=say)
            extra = {"cross_validation": {
                "folds": len(s.prepared.folds),
                "metrics": "out-of-fold: means over the folds' validation rows, where members were selected; "
                           "each member then trained on every row for its best epoch count"}, **extra}
        return export_ensemble(s.run_dir, ensemble, s.checked.encoders, s.checked.tasks, s.run_dir / "ensemble",
                               extra={"experiment": s.exp.name, "study": s.exp.study_name, "data": s.prepared.sources,
                                      **extra})
    except Exception as exc:  # noqa: BLE001
        notes.append(f"could not export the ensemble: {type(exc).__name__}: {exc}")
        return None


def export_best(s: Search, best: TrialRecord | None, extra: dict[str, Any] | None = None,
                ensemble: bool = False) -> Path | None:
    """``RUN_DIR/best``, unless the best trial trained in another run folder sharing the study;
    ``ensemble``: an ensemble is exported after it (the time budget keeps its share before a refit)."""
    if best is None:
        return None
    model_path = trial_dir(s.run_dir, best.number) / "model.keras"
    if s.prepared.folds:  # cross-validated: train the best parameters on every row, for the best epoch count
        from automtl.run.export_trial import trial_model

        model_path = trial_model(s.run_dir, best, s.prepared,
                                 say=None if s.quiet else lambda m: s.console.print(m, highlight=False))
    refitted: dict[str, Any] = {}
    fits, cost = s.budget.fits("refit", s.backend.records(), after=("export", "ensemble") if ensemble else ("export",))
    out_of_time = s.deadline is not None and (not fits or time.time() >= s.deadline)
    if out_of_time and s.exp.search.refit and s.prepared.can_refit and not s.quiet:
        s.console.print(f"[yellow]note:[/] no refit on the validation rows: it would take about {cost:.0f} s, and "
                        f"{max(0.0, s.deadline - time.time()):.0f} s of the time budget (--timeout) are left for it "
                        "and the exports; best/ is the trial's own model", highlight=False, soft_wrap=True)
    if s.exp.search.refit and s.prepared.can_refit and model_path.exists() and best.best_epoch and not out_of_time:
        from automtl.run.export_trial import refit_info, refit_model

        try:
            model_path = refit_model(s.run_dir, best, s.prepared,
                                     say=None if s.quiet else lambda m: s.console.print(m, highlight=False))
            refitted = refit_info(s.prepared, best)
        except Exception as exc:  # noqa: BLE001 - the trial's own model is still there to export
            s.console.print(f"[yellow]could not refit the best trial ({type(exc).__name__}: {exc}); exporting its "
                            "own model[/]", highlight=False, soft_wrap=True)
    if not model_path.exists():
        s.console.print(f"[yellow]best trial #{best.number} trained in another process sharing the study; its model "
                        "is in that process's run folder: that process exports it, or run "
                        f"`automtl export RUN_DIR --trial {best.number} --out DIR` there[/]", highlight=False,
                        soft_wrap=True)
        return None
    from automtl.errors import AutomtlError
    from automtl.export.savedmodel import export_trial
    from automtl.run.export_trial import cross_validation

    def export(formats: list[str]) -> Path:
        started = time.time()
        try:
            return export_trial(model_path, s.checked.encoders, s.checked.tasks, best, s.run_dir / "best",
                                extra={"experiment": s.exp.name, "study": s.exp.study_name,
                                       "data": s.prepared.sources, **cross_validation(s.prepared, best), **refitted,
                                       **(extra or {})},
                                formats=formats, rows=s.prepared.export_rows, model_name=s.exp.name)
        finally:
            s.budget.export_seconds = time.time() - started

    # A format that fails (a converter without a kernel, parity beyond tolerance) is reported,
    # and the SavedModel is still exported.
    formats = s.checked.formats
    for attempt in ([formats, ["saved_model"]] if formats != ["saved_model"] else [formats]):
        try:
            path = export(attempt)
        except AutomtlError as exc:
            s.console.print(f"[red]could not export the best trial:[/] {exc}", highlight=False, soft_wrap=True)
            continue
        if attempt != formats:
            s.console.print(f"[yellow]exported the SavedModel only; retry other formats with `automtl export "
                            f"{s.run_dir} --trial {best.number} --out DIR --format ...`[/]", highlight=False,
                            soft_wrap=True)
        return path
    return None


def _write_report(run_dir: Path, console: Console) -> Path | None:
    """The HTML report; a failure here never costs the user the finished search."""
    from automtl.rundir.report import write_report

    try:
        return write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - report problems are reported, not fatal
        console.print(f"[yellow]could not write the report: {type(exc).__name__}: {exc}[/] "
                      f"(retry with `automtl report {run_dir}`)")
        return None
