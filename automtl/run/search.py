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

Which of these a process does is its :class:`~automtl.run.phases.Role`; the
prepare and run phases live in :mod:`automtl.run.phases`, shared with the
single-task baselines. Words used throughout:
a *trial process* trains trials for a search process
(:mod:`automtl.run.trial_process`); a *search worker* is one of ``--workers N``
search processes on one shared study; a *Keras Tuner worker* runs the trials
a Keras Tuner chief hands out.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from rich.console import Console

from automtl.config import Experiment
from automtl.console import shown
from automtl.core.trial import TrialRecord, trial_dir
from automtl.data.prepare import instantiate, prepare
from automtl.errors import AutomtlError, ConfigError, SearchStopped
from automtl.run.available import drop_unavailable
from automtl.run.baselines import run_baselines
from automtl.run.phases import Checked, Search, no_parallel_workers, prepare_search, run_trials
from automtl.run.summary import SearchSummary, print_summary
from automtl.rundir.folder import check_out_folder, check_owner
from automtl.rundir.lock import check_free
from automtl.space import AUTO, load_space, parse_space, plugin_parameters, resolve_space_path

if TYPE_CHECKING:
    from automtl.plugin_base import InputEncoder


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
        if not spec.joins_running_search():
            check_free(exp.run_dir)  # one live search per run folder
        spec.check_settings(exp.search, exp.run_dir, exp.study_name)
        if isinstance(exp.search.workers, int) and exp.search.workers > 1 and not spec.parallel_workers:
            raise ConfigError(no_parallel_workers(exp.search.workers, spec))
    _devices_before_tensorflow(exp.search.device, exp.search.precision)
    exp, auto, table = with_auto_folds(exp, encoders)
    # A run folder's recorded split (split.json) is read and checked here; a new one is written by prepare_search.
    prepared = prepare(exp, encoders, tasks, exp.run_dir, table=table)
    checked = Checked(exp, encoders, tasks, space, space_path, prepared, formats=formats, auto_folds=auto)
    if checked.space is None:
        build_auto(checked, len(prepared.train))
    checked.notes = drop_unavailable(checked.space, (*encoders, *tasks))  # e.g. weights that cannot be had here
    return checked


def with_auto_folds(exp: Experiment, encoders: Sequence[InputEncoder]) -> tuple[Experiment, bool, Any]:
    """``exp`` with a small table's default cross-validation (:func:`automtl.data.split.auto_folds`)
    resolved, so the run's snapshot, resume, export and retraining all see ``data.folds``; whether it
    was; and the training table when it had to be read to count its rows (else None). Only when every
    input declares ``small_data_folds`` and the backend's algorithm keeps one model per trial."""
    from automtl.data.readers import read_table
    from automtl.data.split import auto_folds, names_split
    from automtl.data.streamed import wants_stream

    from automtl import backends

    cheap = all(e.small_data_folds for e in encoders)
    continues = not backends.spec(exp.search.backend).cross_validates(exp.search.algorithm)
    if names_split(exp.data) or not cheap or continues or wants_stream(exp.data, exp.path(exp.data.train)):
        return exp, False, None  # (a streamed table is never read whole)
    table = read_table(exp.path(exp.data.train), role="training data")
    folds = auto_folds(exp.data, len(table), cheap)
    if folds is None:
        return exp, False, table
    return exp.model_copy(update={"data": exp.data.model_copy(update={"folds": folds})}), True, table


def _devices_before_tensorflow(device: str, precision: str) -> None:
    """What must hold before TensorFlow starts, should a plugin's data preparation start it (image decoding);
    a device or precision the machine cannot give is refused here, from a cheap query."""
    import os

    from automtl.devices import check_devices, hide_gpus
    from automtl.tfimport import set_tf_log_level

    check_devices(device, precision)

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
                            interrupted, stopped=stopped, baselines=baselines, notes=notes, tasks=s.task_entries())
    if trained_here and not interrupted:
        # selected once best/ is out: the time budget then knows what an export costs here
        ensemble = _ensemble(s, records, notes)
    if ensemble is not None:
        summary.ensemble, summary.ensemble_dir = ensemble, _export_ensemble(s, ensemble, extra, notes)
        extra["ensemble"] = ensemble.to_json()
    if extra:
        s.write_tables(records, extra)
    if best is not None and s.prepared.valid is not None and not s.prepared.folds:
        _diagnostics(s, best, ensemble, notes)
    if report and any(r.ok for r in records):
        summary.report = _write_report(s.run_dir, s.console)
    print_summary(s.console, summary, s.primaries)
    return summary


def _diagnostics(s: Search, best: TrialRecord, ensemble: Any, notes: list[str]) -> None:
    """The report's per-task plots on the validation rows; a failure costs only those plots."""
    from automtl.run.diagnostics import write_diagnostics

    try:
        write_diagnostics(s.run_dir, s.checked.tasks, s.prepared.valid, best, ensemble)
    except Exception as exc:  # noqa: BLE001 - the search itself is done and kept
        notes.append(f"could not prepare the report's per-task plots: {type(exc).__name__}: {exc}")


def _baselines(s: Search, best: TrialRecord, notes: list[str]) -> Any:
    """Single-task baselines (``search.baselines``); a failure costs the user only the baselines."""
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
        extra = {"experiment": s.exp.name, "study": s.exp.study_name, "data": s.prepared.sources, **extra}
        formats = s.checked.formats
        try:  # the formats of best/ (search.export_formats) too; one that fails costs only itself
            return export_ensemble(s.run_dir, ensemble, s.checked.encoders, s.checked.tasks, s.run_dir / "ensemble",
                                   extra, formats=formats, rows=s.prepared.export_rows)
        except AutomtlError as exc:
            if formats == ["saved_model"]:
                raise
            notes.append(f"ensemble/ holds the SavedModel only: {exc}")
        return export_ensemble(s.run_dir, ensemble, s.checked.encoders, s.checked.tasks, s.run_dir / "ensemble", extra)
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
                            f"{shown(s.run_dir)} --out DIR --format ...`[/]", highlight=False, soft_wrap=True)
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
