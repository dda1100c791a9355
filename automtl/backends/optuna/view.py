"""A run's trials as an in-memory Optuna study, for the report of a run whose study cannot be opened.

The report draws with Optuna's visualisation module; a Keras Tuner run, or an
Optuna run whose study file moved, is drawn from a study rebuilt here from
``trials.json``, with the distributions of :mod:`automtl.backends.optuna.space`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Sequence

import optuna
from optuna.trial import TrialState, create_trial

from automtl.backends.optuna.space import distribution
from automtl.core.trial import TrialRecord
from automtl.space import FixedParam, SearchSpace

STATES = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "fail": TrialState.FAIL}


def rebuild_study(space: SearchSpace, records: Sequence[TrialRecord], tasks: Sequence[str], pareto: bool,
                  epochs: Mapping[int, Mapping[int, float]]) -> Any:
    """An in-memory study of the finished ``records``; ``epochs``: per trial, its objective per epoch."""
    dists = {p.name: distribution(p) for p in space.params if not isinstance(p, FixedParam)}
    study = optuna.create_study(directions=["maximize"] * (len(tasks) if pareto else 1))
    for r in sorted(records, key=lambda r: r.number):
        if r.state not in STATES:
            continue  # running / waiting trials
        params = {k: v for k, v in r.params.items() if k in dists}
        state = STATES[r.state] if (r.state != "complete" or r.ok) else TrialState.FAIL
        values = None
        if state == TrialState.COMPLETE:
            values = [r.scores.get(t, float("nan")) for t in tasks] if pareto else [r.score]
            if not all(math.isfinite(v) for v in values):
                state, values = TrialState.FAIL, None
        study.add_trial(create_trial(state=state, params=params, distributions={k: dists[k] for k in params},
                                     values=values, user_attrs={"score": r.score},
                                     intermediate_values=dict(epochs.get(r.number, {}))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.set_metric_names(list(tasks) if pareto else ["score"])
    return study
