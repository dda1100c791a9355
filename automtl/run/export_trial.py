"""``automtl export RUN_DIR --out DIR``: what ``best/`` or ``ensemble/`` serves, or any kept trial, in the same
format as ``best/``.

Every completed trial's ``model.keras`` is kept in ``trials/<n>/``. The input
and task plugins are rebuilt from the run's experiment snapshot and refitted
on the same training split (``RUN_DIR/split.json``), so their vocabularies,
scales and class lists match the ones the trial was trained with; nothing is
retrained. A cross-validated run (``data.folds``) keeps no fold models: its
trial is trained once on every training row for its best epoch count, and
that model is kept in ``trials/<n>/`` for the next export.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from automtl.core.trial import TrialRecord, trial_dir
from automtl.errors import AutomtlError
from automtl.rundir.folder import load_experiment
from automtl.rundir.outdir import check_out
from automtl.rundir.results import read_trials

if TYPE_CHECKING:
    from automtl.data.arrays import Prepared


def exportable(run_dir: Path, number: int, retrains: bool | None = None) -> TrialRecord:
    """The trial's record, or a clear error listing the trials that can be exported.

    ``retrains``: the run cross-validated, so a trial's model is trained at
    export (default: read from the run's experiment snapshot).
    """
    records = read_trials(run_dir).records
    if retrains is None:
        retrains = bool(load_experiment(run_dir).data.folds)
    ok = sorted(r.number for r in records
                if r.ok and (retrains or (trial_dir(run_dir, r.number) / "model.keras").exists()))
    by_number = {r.number: r for r in records}
    if number not in by_number:
        raise AutomtlError(f"{run_dir}: no trial {number}; exportable trials: {_list(ok)}")
    record = by_number[number]
    if not record.ok:
        raise AutomtlError(f"{run_dir}: trial {number} is {record.state}, not complete; exportable trials: {_list(ok)}")
    if number not in ok:
        raise AutomtlError(f"{trial_dir(run_dir, number) / 'model.keras'} is missing; exportable trials: {_list(ok)}")
    return record


def export_run_trial(run_dir: Path, number: int, out_dir: Path, formats: Sequence[str] = ("saved_model",),
                     layout: str = "plain", force: bool = False) -> Path:
    """Refit the plugins on the run's training split and export trial ``number`` to ``out_dir``
    (parity and latency measured on the run's validation rows)."""
    run_dir = Path(run_dir)
    record = exportable(run_dir, number)  # fail before any data loads or TensorFlow starts
    check_out(Path(out_dir), force=force, serving=layout == "tf-serving")
    exp = load_experiment(run_dir)
    from automtl.data.prepare import instantiate, prepare

    encoders, tasks = instantiate(exp)
    prepared = prepare(exp, encoders, tasks, run_dir)
    model = trial_model(run_dir, record, prepared, say=print)
    from automtl.export.savedmodel import export_trial

    return export_trial(
        model, encoders, tasks, record, Path(out_dir),
        extra={"experiment": exp.name, "study": exp.study_name, "data": prepared.sources,
               "exported_from": str(run_dir.resolve()), **_run_baselines(run_dir),
               **cross_validation(prepared, record)},
        formats=formats, rows=prepared.export_rows, layout=layout, model_name=exp.name, force=force,
    )


#: What ``automtl export RUN`` can export besides a trial or a baseline: the folders a search serves from.
SERVED = {"best": "the best trial's model as best/ serves it (refit on the validation rows when the search did)",
          "ensemble": "the ensemble as ensemble/ serves it"}
#: Manifest keys an export writes afresh; the rest of a served folder's manifest is carried over.
_REWRITTEN = ("format", "created", "signature", "signatures", "inputs", "tasks", "parameters", "formats", "portable",
              "layout", "trial", "versions", "kind", "ensemble", "exported_from")


def served_manifest(run_dir: Path, which: str) -> dict:
    """``RUN_DIR/<which>/automtl.json`` (``best`` or ``ensemble``), or a clear error saying what to do instead."""
    import json

    run_dir = Path(run_dir)
    read_trials(run_dir)  # a clear error when this is not a run folder
    folder = run_dir / which
    try:
        manifest = json.loads((folder / "automtl.json").read_text())
    except FileNotFoundError:
        why = ("no trial completed, the search stopped before its export, or the best trial trained in another "
               "run folder" if which == "best" else
               "fewer than 2 trials completed, the ensemble was off (search.ensemble: 0) or it did not fit the time "
               "budget")
        raise AutomtlError(f"{folder} does not exist ({why}); export a trial with --trial N (see "
                           f"`automtl trials {run_dir}`)") from None
    except ValueError as exc:
        raise AutomtlError(f"{folder / 'automtl.json'} is not valid JSON ({exc}); rerun the search to "
                           "export it again") from None
    model = folder / "model.keras"
    if which == "best" and not model.is_file():
        raise AutomtlError(f"{model} is missing; rerun the search to export best/ again")
    return manifest


def export_served(run_dir: Path, which: str, out_dir: Path, formats: Sequence[str] = ("saved_model",),
                  layout: str = "plain", force: bool = False) -> Path:
    """Export what ``RUN_DIR/best`` or ``RUN_DIR/ensemble`` serves to ``out_dir`` in ``formats``.

    Why not copy the folder: another layout, ONNX or LiteRT need the run's plugins
    and validation rows (parity checks). Nothing is retrained: ``best/model.keras``
    is the model best/ serves (the refit one when the search refit), and the
    ensemble's members are the trials it lists.
    """
    run_dir = Path(run_dir)
    manifest = served_manifest(run_dir, which)
    check_out(Path(out_dir), force=force, serving=layout == "tf-serving")
    exp = load_experiment(run_dir)
    from automtl.data.prepare import instantiate, prepare

    encoders, tasks = instantiate(exp)
    prepared = prepare(exp, encoders, tasks, run_dir)
    extra = {k: v for k, v in manifest.items() if k not in _REWRITTEN}
    extra["exported_from"] = str((run_dir / which).resolve())
    if which == "ensemble":
        from automtl.export.ensemble import export_ensemble, read_ensemble

        return export_ensemble(run_dir, read_ensemble(run_dir / which), encoders, tasks, Path(out_dir), extra,
                               formats=formats, rows=prepared.export_rows, layout=layout,
                               model_name=f"{exp.name}-ensemble", force=force)
    t = manifest.get("trial") or {}
    record = TrialRecord(int(t.get("number", -1)), "complete", t.get("score"), t.get("params") or {},
                         t.get("metrics") or {}, None, device=t.get("device") or "", best_epoch=t.get("best_epoch"))
    from automtl.export.savedmodel import export_trial

    return export_trial(run_dir / which / "model.keras", encoders, tasks, record, Path(out_dir), extra,
                        formats=formats, rows=prepared.export_rows, layout=layout, model_name=exp.name, force=force)


def _run_baselines(run_dir: Path) -> dict:
    """The run's single-task baselines and delta-m, as ``best/automtl.json`` holds them."""
    from automtl.rundir.baselines import read_baselines

    found = read_baselines(run_dir)
    return {"baselines": found.to_json()} if found is not None else {}


def trial_model(run_dir: Path, record: TrialRecord, prepared: "Prepared", say: Callable[[str], None] | None = None) -> Path:
    """The trial's ``model.keras``; a cross-validated trial's is first trained on every training row (once)."""
    path = trial_dir(run_dir, record.number) / "model.keras"
    if path.exists() or not prepared.folds:
        return path
    epochs = int(record.best_epoch or prepared.experiment.search.epochs)
    if say is not None:
        say(f"retraining trial #{record.number} on all {len(prepared.train)} training rows for {epochs} epoch(s), "
            f"its best epoch count in {len(prepared.folds)}-fold cross-validation")
    from automtl.training.runner import refit

    return refit(prepared, record.params, epochs, prepared.experiment.search.seed + record.number, path,
                 budget=int(record.cost.get("planned_epochs") or prepared.experiment.search.epochs))


#: The best trial's parameters trained once more on the training and validation rows (``search.refit``).
REFIT_MODEL = "refit.keras"


def refit_model(run_dir: Path, record: TrialRecord, prepared: "Prepared",
                say: Callable[[str], None] | None = None) -> Path:
    """``trials/<n>/refit.keras``: trial ``n``'s parameters trained on the training and validation rows
    together for its best epoch count (its learning-rate schedule spanning the same epoch budget).

    Why: the validation rows chose the parameters and the epoch count; the model that
    serves should also learn from them (a fifth more data with the default split, which
    counts on small tables). Trained once; a resumed run reuses it.
    """
    path = trial_dir(run_dir, record.number) / REFIT_MODEL
    if path.exists():
        return path
    epochs = int(record.best_epoch or prepared.experiment.search.epochs)
    both = prepared.with_valid_rows()
    if say is not None:
        say(f"refitting trial #{record.number} on its {len(prepared.train)} training + {len(prepared.valid or ())} "
            f"validation rows for {epochs} epoch(s), its best epoch count (search.refit)")
    from automtl.training.runner import refit

    return refit(both, record.params, epochs, prepared.experiment.search.seed + record.number, path,
                 budget=int(record.cost.get("planned_epochs") or prepared.experiment.search.epochs))


def refit_info(prepared: "Prepared", record: TrialRecord) -> dict:
    """For the manifest: what a refitted model trained on."""
    return {"refit": {"rows": len(prepared.train) + len(prepared.valid or ()), "epochs": record.best_epoch,
                      "metrics": "the trial's, on the validation rows, before the refit trained on them"}}


def cross_validation(prepared: "Prepared", record: TrialRecord) -> dict:
    """For the manifest: how a cross-validated model was chosen and trained (empty otherwise)."""
    if not prepared.folds:
        return {}
    return {"cross_validation": {"folds": len(prepared.folds), "epochs": record.best_epoch,
                                 "metrics": "means over the folds' validation rows; the model trained on every row"}}


def _list(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers)) if numbers else "none"


def baseline_model(run_dir: Path, task: str) -> tuple[Path, object]:
    """``(model.keras, its baseline entry)`` of ``task``'s single-task baseline, or a clear error."""
    from automtl.rundir.baselines import read_baselines

    run_dir = Path(run_dir)
    read_trials(run_dir)  # a clear error when this is not a run folder
    found = read_baselines(run_dir)
    if found is None:
        raise AutomtlError(f"{run_dir}: no single-task baselines in this run (baselines.json); run the search with "
                           "--baselines auto or search")
    entry = found.task(task)
    if entry is None:
        raise AutomtlError(f"{run_dir}: no baseline for task '{task}'; baselines: "
                           f"{', '.join(t.task for t in found.tasks) or 'none'}")
    path = trial_dir(run_dir / entry.folder, entry.trial) / "model.keras"
    # a cross-validated baseline keeps no model: the export trains it on every row, as best/ is
    if not path.exists() and not load_experiment(run_dir).data.folds:
        raise AutomtlError(f"{path} is missing; rerun the search to retrain the baseline")
    return path, entry


def export_baseline(run_dir: Path, task: str, out_dir: Path, formats: Sequence[str] = ("saved_model",),
                    layout: str = "plain", force: bool = False) -> Path:
    """Refit the plugins on the run's split and export ``task``'s single-task model like ``best/``."""
    from automtl.rundir.baselines import read_baselines

    run_dir = Path(run_dir)
    path, entry = baseline_model(run_dir, task)
    exp = load_experiment(run_dir)
    exp = exp.model_copy(update={"tasks": [c for c in exp.tasks if c.name == task]})
    from automtl.data.prepare import instantiate, prepare

    encoders, tasks = instantiate(exp)
    prepared = prepare(exp, encoders, tasks, run_dir)
    from automtl.export.savedmodel import export_trial

    record = TrialRecord(entry.trial, "complete", entry.score, entry.params, entry.metrics, entry.seconds,
                         best_epoch=entry.best_epoch)
    path = trial_model(run_dir / entry.folder, record, prepared, say=print)
    return export_trial(path, encoders, tasks, record, Path(out_dir),
                        extra={"experiment": exp.name, "data": prepared.sources, "exported_from": str(run_dir.resolve()),
                               "baseline": {"task": task, "mode": read_baselines(run_dir).mode,  # type: ignore[union-attr]
                                            "multi_task": entry.multi, "single_task": entry.single,
                                            "metric": entry.metric, "delta": entry.delta},
                               **cross_validation(prepared, record)},
                        formats=formats, rows=prepared.export_rows, layout=layout, model_name=f"{exp.name}-{task}",
                        force=force)
