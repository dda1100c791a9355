"""automtl search spaces in Optuna: the one translation of a parameter into an Optuna distribution.

The backend suggests from these distributions; the report rebuilds a study
for other backends' runs from them.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from automtl.space import ChoiceParam, FloatParam, IntParam, Param


def distribution(p: Param) -> BaseDistribution:
    """Optuna's distribution for an int, float or choice parameter (fixed values are not searched)."""
    if isinstance(p, IntParam):
        return IntDistribution(p.low, p.high, step=p.step or 1, log=p.log)
    if isinstance(p, FloatParam):
        return FloatDistribution(p.low, p.high, step=p.step, log=p.log)
    if isinstance(p, ChoiceParam):
        return CategoricalDistribution(list(p.values))
    raise TypeError(f"no Optuna distribution for {p!r}")


def suggest(trial: optuna.Trial, p: Param) -> Any:
    """Ask the trial for ``p``'s value through Optuna's public ``suggest_*`` calls."""
    d = distribution(p)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(p.name, d.low, d.high, step=d.step, log=d.log)
    if isinstance(d, FloatDistribution):
        return trial.suggest_float(p.name, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_categorical(p.name, list(d.choices))
