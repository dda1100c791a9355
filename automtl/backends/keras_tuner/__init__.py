"""The Keras Tuner backend: random, Bayesian or Hyperband search, alone or as chief and workers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from automtl.backends.base import BackendSpec
from automtl.errors import ConfigError

if TYPE_CHECKING:
    from automtl.config import SearchConfig

#: In the project folder: which algorithm created it (written by the engine, read here before TensorFlow).
MARKER_FILE = "automtl_backend.json"


def is_worker() -> bool:
    """A Keras Tuner worker joins its chief's run folder (the chief holds it)."""
    from automtl.backends.keras_tuner.roles import distributed_role

    return distributed_role() == "worker"


def check_settings(settings: "SearchConfig", run_dir: Path, study: str) -> None:
    """What a Keras Tuner search refuses before TensorFlow loads: an Optuna storage, another algorithm."""
    if settings.storage:
        raise ConfigError(f"--storage {settings.storage}: study storages are the Optuna backend's; Keras Tuner keeps "
                          f"its project in RUN_DIR/keras_tuner/<study> (leave --storage out)")
    marker = Path(run_dir) / "keras_tuner" / study / MARKER_FILE
    if marker.is_file():
        try:
            before = json.loads(marker.read_text()).get("algorithm")
        except (OSError, ValueError, AttributeError):
            return  # the engine reports an unreadable project
        if before != settings.algorithm:
            raise ConfigError(
                f"the Keras Tuner project {marker.parent} was started with --algorithm {before}; resume it with that "
                f"algorithm, or use another --out for '{settings.algorithm}'"
            )


SPEC = BackendSpec(
    name="keras-tuner",
    algorithms=("random", "bayesian", "hyperband"),
    default_algorithm="bayesian",
    engine="automtl.backends.keras_tuner.backend:KerasTunerBackend",
    multi_objective=False,
    pruning="Hyperband's successive halving (algorithm hyperband); no per-epoch pruner",
    pruners=("none",),
    continues_trials=("hyperband",),
    parallel_workers=False,
    optuna_study=False,
    distributed="Keras Tuner's chief and workers (KERASTUNER_* environment variables)",
    check="automtl.backends.keras_tuner:check_settings",
    joins="automtl.backends.keras_tuner:is_worker",
)
