"""``automtl export RUN_DIR --trial N --out DIR``: any kept trial, in the same format as ``best/``.

Every completed trial's ``model.keras`` is kept in ``trials/<n>/``. The input
and task plugins are rebuilt from the run's experiment snapshot and refitted
on the same (seeded) training split, so their vocabularies, scales and class
lists match the ones the trial was trained with; nothing is retrained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from automtl.trial import TrialRecord, trial_dir
from automtl.errors import AutomtlError
from automtl.outputs.outdir import check_out
from automtl.outputs.results import read_trials
from automtl.outputs.rundir import load_experiment


def exportable(run_dir: Path, number: int) -> TrialRecord:
    """The trial's record, or a clear error listing the trials that can be exported."""
    records = read_trials(run_dir).records
    ok = sorted(r.number for r in records if r.ok and (trial_dir(run_dir, r.number) / "model.keras").exists())
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
    prepared = prepare(exp, encoders, tasks)
    from automtl.outputs.export import export_trial

    return export_trial(
        trial_dir(run_dir, number) / "model.keras", encoders, tasks, record, Path(out_dir),
        extra={"experiment": exp.name, "study": exp.study_name, "data": prepared.sources,
               "exported_from": str(run_dir.resolve())},
        formats=formats, rows=prepared.valid.x, layout=layout, model_name=exp.name, force=force,
    )


def _list(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers)) if numbers else "none"
