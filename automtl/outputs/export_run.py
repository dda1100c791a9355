"""``automtl export RUN_DIR --trial N --out DIR``: any kept trial, in the same format as ``best/``.

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

from automtl.trial import TrialRecord, trial_dir
from automtl.errors import AutomtlError
from automtl.outputs.outdir import check_out
from automtl.outputs.results import read_trials
from automtl.outputs.rundir import load_experiment

if TYPE_CHECKING:
    from automtl.data.prepare import Prepared


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
    from automtl.outputs.export import export_trial

    return export_trial(
        model, encoders, tasks, record, Path(out_dir),
        extra={"experiment": exp.name, "study": exp.study_name, "data": prepared.sources,
               "exported_from": str(run_dir.resolve()), **cross_validation(prepared, record)},
        formats=formats, rows=prepared.export_rows, layout=layout, model_name=exp.name, force=force,
    )


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
                 budget=prepared.experiment.search.epochs)


def cross_validation(prepared: "Prepared", record: TrialRecord) -> dict:
    """For the manifest: how a cross-validated model was chosen and trained (empty otherwise)."""
    if not prepared.folds:
        return {}
    return {"cross_validation": {"folds": len(prepared.folds), "epochs": record.best_epoch,
                                 "metrics": "means over the folds' validation rows; the model trained on every row"}}


def _list(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers)) if numbers else "none"
