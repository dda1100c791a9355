"""Search backends: they propose parameter values and record results, nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from automtl.backends.base import Backend
from automtl.config import MULTI_OBJECTIVE_BACKENDS, SearchConfig
from automtl.errors import ConfigError
from automtl.space import SearchSpace

BACKENDS = ("optuna", "keras-tuner")


def create(settings: SearchConfig, run_dir: Path, space: SearchSpace, study: str,
           objectives: Sequence[str] = ()) -> Backend:
    """The backend named in the settings; imports its engine lazily.

    ``objectives`` are the task names, one objective each, for ``objective: pareto``.
    """
    if settings.objective == "pareto" and settings.backend not in MULTI_OBJECTIVE_BACKENDS:
        # Never a silent sum of the task scores: that would be the 'mean' objective in disguise.
        raise ConfigError(
            f"search.objective 'pareto' needs a multi-objective backend ({', '.join(MULTI_OBJECTIVE_BACKENDS)}); "
            f"backend '{settings.backend}' has no true multi-objective search"
        )
    if settings.backend == "optuna":
        from automtl.backends.optuna.backend import OptunaBackend

        return OptunaBackend(settings, run_dir, space, study, objectives)
    if settings.backend == "keras-tuner":
        from automtl.backends.keras_tuner.backend import KerasTunerBackend

        return KerasTunerBackend(settings, run_dir, space, study, objectives)
    raise ConfigError(f"unknown backend '{settings.backend}'; known backends: {', '.join(BACKENDS)}")
