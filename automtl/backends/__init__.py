"""Search backends: they propose parameter values and record results, nothing else."""

from __future__ import annotations

from pathlib import Path

from automtl.backends.base import Backend
from automtl.config import SearchConfig
from automtl.errors import ConfigError
from automtl.space import SearchSpace

BACKENDS = ("optuna",)


def create(settings: SearchConfig, run_dir: Path, space: SearchSpace, study: str) -> Backend:
    """The backend named in the settings; imports its engine lazily."""
    if settings.backend == "optuna":
        from automtl.backends.optuna_backend import OptunaBackend

        return OptunaBackend(settings, run_dir, space, study)
    raise ConfigError(f"unknown backend '{settings.backend}'; known backends: {', '.join(BACKENDS)}")
