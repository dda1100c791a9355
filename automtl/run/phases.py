"""What the phases of a search share: who this process is, the checked input, the search in progress,
and the prepare and run phases themselves.

:mod:`automtl.run.search` drives one search through its phases; the
single-task baselines (:mod:`automtl.run.baselines`) run small searches of
their own through the same two phases. Both import this module, and neither
imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from automtl.config import Experiment, fidelity_obstacle
from automtl.core.trial import TrialRecord
from automtl.data.arrays import Prepared
from automtl.data.split import write_split
from automtl.errors import ConfigError, SearchStopped
from automtl.run.budget import PLANNED_TRIALS, Budget
from automtl.run.chance import chance_reference
from automtl.run.faults import FailureStreak
from automtl.run.progress import SearchProgress
from automtl.rundir.folder import ensure_writable, record_owner, write_snapshot
from automtl.rundir.lock import hold
from automtl.rundir.results import write_trials_csv, write_trials_json
from automtl.space import SearchSpace


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
    #: what the checks changed and the start-up line says (choices dropped: :mod:`automtl.run.available`)
    notes: list[str] = field(default_factory=list)


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
    #: each task's chance level on the validation rows (:func:`automtl.run.chance.chance_reference`)
    reference: dict[str, Any] = field(default_factory=dict)

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

    def task_entries(self) -> list[dict[str, Any]]:
        """The run's tasks as ``trials.json`` records them: metric, direction, importance, chance level."""
        return [{"name": t.name, "type": t.type_name, "primary_metric": t.primary_metric, "direction": t.direction,
                 "importance": self.prepared.importance.get(t.name, 1.0),
                 **({"reference": self.reference[t.name]} if t.name in self.reference else {})}
                for t in self.checked.tasks]

    def write_tables(self, records: list[TrialRecord], extra: dict[str, Any] | None = None) -> None:
        if not self.role.writes_tables:
            return
        tasks = self.task_entries()
        write_trials_csv(records, self.run_dir / "trials.csv")
        write_trials_json(records, self.run_dir / "trials.json", tasks=tasks,
                          objective=self.exp.search.objective, experiment=self.exp.name, extra=extra)


def no_parallel_workers(workers: Any, spec: Any) -> str:
    return (f"--workers {workers} runs search workers on one shared study; backend '{spec.name}' cannot share one "
            f"this way: it uses {spec.distributed}")


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
        raise ConfigError(no_parallel_workers(settings.workers, spec))
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
    if not search_worker and not spec.joins_running_search():
        hold(run_dir)  # one live search per run folder, until the process ends (released early by the command)
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
    search.reference = chance_reference(prepared)
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
    why_not = fidelity_obstacle(spec.promotes, spec.name, len(prepared.folds), settings.objective, parallel)
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
    from automtl import backends
    from automtl.run import fidelity

    exp, settings, tasks, space = s.exp, s.exp.search, s.checked.tasks, s.checked.space
    startup = backends.spec(settings.backend).pruner_startup_trials(settings)
    s.console.print(
        f"[bold]automtl search[/] '{exp.name}': {describe_rows(s)}; "
        f"tasks {', '.join(f'{t.name} ({t.type_name})' for t in tasks)}\n"
        f"space {s.checked.space_path or 'auto (see space.yaml)'} ({len(space.params)} parameters); backend {settings.backend}/{settings.algorithm}"
        + (f", pruner {settings.pruner} (from epoch {settings.pruner_warmup}"
           + (f", after {startup} completed trials)" if startup is not None else ")")
           if settings.pruner not in (None, "none") else ", no pruning")
        + "; " + ("objective pareto (one per task" + (", plus latency" if settings.latency_objective else "") + "); "
                  if settings.objective == "pareto" else "")
        + ("as many trials as fit in the time" if settings.time_is_budget else f"{settings.max_trials} trials")
        + f" x up to {settings.epochs} epochs"
        + (f" x {len(s.prepared.folds)} folds (each trial costs {len(s.prepared.folds)} trainings)"
           if s.prepared.folds else "")
        + (f"; {s.budget.describe()}" if s.budget.describe() else "")
        + (f"; {fidelity.describe(s.rungs, len(s.prepared.train))}" if len(s.rungs) > 1 else "")
        + f"; {where}\nrun folder {s.run_dir}"
        + "".join(f"\n[yellow]note:[/] {note}" for note in s.checked.notes),
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
