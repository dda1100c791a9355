"""What the report plots per task on the validation rows, for the best trial and the ensemble side by side.

Written by the search (it holds the validation rows and the task plugins);
the report only reads it (``RUN_DIR/diagnostics.json``). Each task turns raw
outputs into plain numbers with its :meth:`~automtl.api.Task.diagnostics`
hook: a confusion matrix and per-class precision and recall, actual against
predicted values, precision-recall curves. The best trial's figures are its
own model's on the validation rows (best/ may be refit on those rows, which
would make them look better than they are).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from automtl.core.trial import TrialRecord
from automtl.rundir.report_tasks import DIAGNOSTICS
from automtl.rundir.results import finite
from automtl.run.ensemble import combine_outputs, load_valid_pred

FORMAT = "automtl-diagnostics/1"


def write_diagnostics(run_dir: Path, tasks: Sequence[Any], valid: Any, best: TrialRecord,
                      ensemble: Any = None) -> Path | None:
    """``RUN_DIR/diagnostics.json`` for the best trial (and the ensemble); None when the best trial kept
    no validation outputs for these rows (a cross-validated run, say)."""
    pred = load_valid_pred(run_dir, best.number)
    if pred is None or any(t.name not in pred or len(pred[t.name]) != len(valid) for t in tasks):
        return None
    models = [(f"best trial #{best.number}", pred)]
    if ensemble is not None:
        members = {int(m["trial"]) for ms in ensemble.tasks.values() for m in ms}
        preds = {n: load_valid_pred(run_dir, n) for n in members}
        if all(p is not None for p in preds.values()):
            models.append(("ensemble", combine_outputs(tasks, preds, ensemble.tasks)))  # type: ignore[arg-type]
    doc = {"format": FORMAT, "rows": len(valid), "models": [
        {"name": name, "tasks": {t.name: t.diagnostics(valid.y[t.name], valid.mask[t.name],
                                                       np.asarray(outputs[t.name], np.float64)) for t in tasks}}
        for name, outputs in models]}
    path = Path(run_dir) / DIAGNOSTICS
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(finite(doc), allow_nan=False))
    os.replace(tmp, path)
    return path
