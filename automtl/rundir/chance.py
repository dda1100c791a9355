"""The chance-level reference as the summary, the leaderboards and the report show it.

Reads the ``reference`` entry each task has in ``trials.json`` (see
:func:`automtl.run.chance.chance_reference`); computes nothing.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from automtl.core.trial import TrialRecord


def _num(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4g}"


def header(tasks: Sequence[Mapping[str, Any]]) -> str:
    """``chance level: health.accuracy 0.796, price.rmse 10.2`` (empty when no task has a reference)."""
    parts = [f"{t['name']}.{ref['metric']} {_num(ref.get('value'))}"
             for t in tasks if (ref := t.get("reference"))]
    return "chance level: " + ", ".join(parts) if parts else ""


def lines(tasks: Sequence[Mapping[str, Any]], best: TrialRecord | None) -> list[str]:
    """One line per task: the best trial's metric beside its trivial predictor's, on the validation rows."""
    out = []
    for t in tasks:
        ref = t.get("reference")
        if not ref:
            continue
        key = f"{t['name']}.{ref['metric']}"
        here = f"best trial {_num(best.metrics.get(key))} vs " if best is not None else ""
        out.append(f"{key}: {here}{_num(ref.get('value'))} for {ref.get('label', 'a trivial predictor')}")
    return out


def shortfalls(tasks: Sequence[Mapping[str, Any]], best: TrialRecord | None) -> list[str]:
    """A warning per task where the best trial does not beat its chance level on the task's metric."""
    if best is None:
        return []
    out = []
    for t in tasks:
        ref = t.get("reference")
        if not ref or ref.get("value") is None:
            continue
        metric = ref["metric"]
        value = best.metrics.get(f"{t['name']}.{metric}")
        if value is None or not math.isfinite(value):
            continue
        better = value > ref["value"] if t.get("direction", "maximize") == "maximize" else value < ref["value"]
        if not better:
            out.append(f"the best trial does not beat chance level on task '{t['name']}': {metric} {_num(value)} vs "
                       f"{_num(ref['value'])} for {ref.get('label', 'a trivial predictor')} on the validation rows. "
                       "The models add nothing this metric sees: check the inputs, or choose the task's `metric:` "
                       "(a dominant class: log_loss or balanced_accuracy, and `class_weight: balanced`)")
    return out
