"""One search run: experiment -> plugins -> data -> backend + trial runner -> results -> export."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import yaml
from rich.console import Console

from automtl.trial import TrialRecord, trial_dir
from automtl.config import Experiment
from automtl.errors import ConfigError, SearchStopped
from automtl.run.faults import FailureStreak
from automtl.data.prepare import instantiate, prepare
from automtl.run.progress import SearchProgress, leaderboard_table
from automtl.outputs.results import leaderboard, write_trials_csv, write_trials_json
from automtl.space import load_space, plugin_parameters, resolve_space_path


@dataclass
class SearchSummary:
    run_dir: Path
    records: list[TrialRecord]
    best: TrialRecord | None
    export_dir: Path | None
    interrupted: bool = False
    report: Path | None = None
    #: why the search stopped before its budget (e.g. ten failures in a row)
    stopped: str | None = None
    #: a distributed worker: another process records the study and exports
    worker: bool = False


def ensure_writable(run_dir: Path) -> Path:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".automtl-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output folder {run_dir} cannot be written: {exc.strerror or exc}") from None
    return run_dir


def run_search(exp: Experiment, console: Console | None = None, quiet: bool = False,
               report: bool = True, worker: bool = False) -> SearchSummary:
    """One search; ``worker``: one of ``--workers N`` processes (no export, the coordinator does it)."""
    console = console or Console()
    settings = exp.search
    # Everything that can be wrong with the user's files is checked before TensorFlow loads.
    encoders, tasks = instantiate(exp)
    extra = plugin_parameters((*encoders, *tasks))
    space_path = resolve_space_path(exp.space, exp.base_dir)
    space = load_space(space_path, [t.name for t in tasks], extra)
    from automtl.devices import configure
    from automtl.run.parallel import resolve_workers

    workers, gpus = (1, []) if worker else resolve_workers(settings.workers, settings.device)
    from automtl.backends import spec as backend_spec

    if workers > 1 and not backend_spec(settings.backend).parallel_workers:
        raise ConfigError(f"--workers {settings.workers} runs search workers on one shared study; backend "
                          f"'{settings.backend}' cannot share one this way: {backend_spec(settings.backend).distributed}")
    if workers > 1 and settings.device == "gpu" and not gpus:
        configure("gpu")  # raises the clear "no GPU" error once, before any worker starts
    settings.workers = workers
    # The search process trains nothing itself when workers do: keep it off the GPUs they use.
    plan = configure("cpu" if workers > 1 else settings.device, settings.precision if workers == 1 else "float32")
    prepared = prepare(exp, encoders, tasks)
    run_dir = ensure_writable(exp.run_dir)
    if not worker:
        _snapshot(exp, space_path, run_dir)

    from automtl import backends

    backend = backends.create(settings, run_dir, space, exp.study_name, objectives=[t.name for t in tasks])
    primaries = {t.name: t.primary_metric for t in tasks}
    progress = SearchProgress(console, primaries, settings.epochs, quiet=quiet)
    if not quiet and not worker:
        device = f"{workers} workers" if workers > 1 else f"device {plan.describe()}"
        console.print(
            f"[bold]automtl search[/] '{exp.name}': {len(prepared.train)} training / {len(prepared.valid)} validation rows; "
            f"tasks {', '.join(f'{t.name} ({t.type_name})' for t in tasks)}\n"
            f"space {space_path} ({len(space.params)} parameters); backend {settings.backend}/{settings.algorithm}; "
            + ("objective pareto (one per task); " if settings.objective == "pareto" else "")
            + f"{settings.trials} trials x up to {settings.epochs} epochs; {device}\nrun folder {run_dir}",
            highlight=False,
        )
    runner = make_runner(exp, prepared, run_dir, progress) if workers == 1 else None
    csv_path = run_dir / "trials.csv"
    task_meta = [{"name": t.name, "type": t.type_name, "primary_metric": t.primary_metric,
                  "direction": t.direction, "importance": prepared.importance.get(t.name, 1.0)} for t in tasks]

    def write_results(records: list[TrialRecord]) -> None:
        if backend.is_worker:  # a distributed worker: the process holding the study writes the tables
            return
        write_trials_csv(records, csv_path)
        write_trials_json(records, run_dir / "trials.json", tasks=task_meta,
                          objective=settings.objective, experiment=exp.name)
    done_before = sum(r.state in ("complete", "pruned", "fail") for r in backend.records())
    if done_before and not quiet and not worker:
        console.print(f"resuming study '{exp.study_name}': {done_before} finished trial(s) kept")

    best_before = backend.best()
    if best_before is not None:  # "new best" marks compare with the resumed study's best
        progress.best = best_before.score
    streak = FailureStreak()

    def on_trial(record: TrialRecord) -> None:
        progress.trial(record)
        write_results(backend.records())
        streak.add(record)  # ten failures in a row stop the search

    interrupted, stopped = False, None
    if workers == 1:
        progress.start(settings.trials, min(done_before, settings.trials))
    try:
        if workers > 1:
            from automtl.run.parallel import run_workers

            outcome = run_workers(exp, run_dir, backend.storage_url, workers, gpus, console, quiet)
            interrupted, stopped = outcome.interrupted, outcome.stopped
        else:
            backend.optimize(runner, settings.trials, settings.timeout, on_trial)
    except KeyboardInterrupt:
        interrupted = True
        if not worker:
            console.print("[yellow]interrupted: keeping finished trials and exporting the best so far[/]")
    except SearchStopped as exc:
        stopped = str(exc)
        if not worker:
            console.print(f"[red]stopped:[/] {stopped}", highlight=False, soft_wrap=True)
    finally:
        progress.close()
        if hasattr(runner, "close"):
            runner.close()
    records = backend.records()
    if worker:
        return SearchSummary(run_dir, records, None, None, interrupted, stopped=stopped, worker=True)
    if backend.is_worker:
        # Keras Tuner's chief holds the oracle: it records every trial and exports the best model.
        if not quiet:
            console.print(f"worker done: ran {len(records)} trial(s); the chief writes trials.csv and exports the best model",
                          highlight=False)
        return SearchSummary(run_dir, records, backend.best(), None, interrupted, worker=True)
    write_results(records)
    best = backend.best()
    export_dir = None
    model_path = trial_dir(run_dir, best.number) / "model.keras" if best is not None else None
    if best is not None and not model_path.exists():
        # A study shared by several machines: the best trial trained in another run folder.
        console.print(f"[yellow]best trial #{best.number} trained in another process sharing the study; its model "
                      "is in that process's run folder: that process exports it, or run "
                      f"`automtl export RUN_DIR --trial {best.number} --out DIR` there[/]", highlight=False, soft_wrap=True)
    elif best is not None:
        from automtl.outputs.export import export_trial

        export_dir = export_trial(
            trial_dir(run_dir, best.number) / "model.keras", encoders, tasks, best, run_dir / "best",
            extra={"experiment": exp.name, "study": exp.study_name, "data": prepared.sources},
        )
    summary = SearchSummary(run_dir, records, best, export_dir, interrupted, stopped=stopped)
    if report and any(r.ok for r in records):
        summary.report = _write_report(run_dir, console)
    _print_summary(console, summary, primaries)
    return summary


def make_runner(exp: Experiment, prepared: Any, run_dir: Path, progress: SearchProgress) -> Any:
    """Trials in a recycled worker process (bounded memory, crash isolation), or in this process."""
    if exp.search.trials_per_process > 0:
        from automtl.run.trial_process import ProcessTrialRunner

        runner = ProcessTrialRunner(exp, run_dir, exp.search.trials_per_process, on_epoch=progress.epoch)
        runner.warm_up()
        return runner
    from automtl.training.runner import TrialRunner

    return TrialRunner(prepared, run_dir, on_epoch=lambda n, r: progress.epoch(n, r.epoch, r.objective))


def _write_report(run_dir: Path, console: Console) -> Path | None:
    """The HTML report; a failure here never costs the user the finished search."""
    from automtl.outputs.report import write_report

    try:
        return write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - report problems are reported, not fatal
        console.print(f"[yellow]could not write the report: {type(exc).__name__}: {exc}[/] "
                      f"(retry with `automtl report {run_dir}`)")
        return None


def _snapshot(exp: Experiment, space_path: Path, run_dir: Path) -> None:
    """Keep what the run used next to its results."""
    data = exp.model_dump(mode="json", exclude={"base_dir"})
    # Absolute paths, so `automtl export RUN_DIR` can refit the plugins from this file alone.
    data["data"]["train"] = str(exp.path(exp.data.train).resolve())
    if exp.data.valid is not None:
        data["data"]["valid"] = str(exp.path(exp.data.valid).resolve())
    data["search"]["out"] = str(run_dir.resolve())
    if data["search"].get("storage"):
        from automtl.backends.optuna.storage import without_password

        data["search"]["storage"] = without_password(data["search"]["storage"])  # never a password on disk
    # Plugin options may hold paths relative to the experiment file (an image root, say).
    data["base_dir"] = str(Path(exp.base_dir).resolve())
    (run_dir / "experiment.resolved.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    target = run_dir / "space.yaml"
    if space_path.resolve() != target.resolve():
        shutil.copyfile(space_path, target)


def _print_summary(console: Console, s: SearchSummary, primaries: dict[str, str]) -> None:
    counts: dict[str, int] = {}
    for r in s.records:
        counts[r.state] = counts.get(r.state, 0) + 1
    console.print(f"\n{len(s.records)} trials: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    top = leaderboard(s.records)
    if top:
        console.print(leaderboard_table(top, primaries))
    if s.best is None:
        console.print("[red]no trial completed; nothing to export[/] (see trials.csv for the reasons)")
        return
    front = sorted(r.number for r in s.records if r.pareto)
    if front:
        console.print(f"Pareto front: trials {', '.join(map(str, front))} "
                      f"(export any with `automtl export {os.path.relpath(s.run_dir)} --trial N --out DIR`)",
                      highlight=False, soft_wrap=not console.is_terminal)
    rel = os.path.relpath(s.export_dir) if s.export_dir else ""
    exported = (f"exported to [bold]{rel}[/]: saved_model/ (serving_default), model.keras, automtl.json"
                if s.export_dir else "not exported here (it trained in another run folder)")
    console.print(
        f"best trial #{s.best.number} (score {s.best.score:.4f}) {exported}\n"
        f"all trials: {os.path.relpath(s.run_dir / 'trials.csv')}"
        + (f"\nreport: {os.path.relpath(s.report)}" if s.report else ""),
        highlight=False,
    )
