"""The Keras Tuner backend: random, Bayesian or Hyperband search, alone or as chief and workers."""

from automtl.backends.base import BackendSpec

SPEC = BackendSpec(
    name="keras-tuner",
    algorithms=("random", "bayesian", "hyperband"),
    default_algorithm="bayesian",
    engine="automtl.backends.keras_tuner.backend:KerasTunerBackend",
    multi_objective=False,
    pruning="Hyperband's successive halving (algorithm hyperband); no per-epoch pruner",
    pruners=("none",),
    parallel_workers=False,
    optuna_study=False,
    distributed="Keras Tuner's chief and workers (KERASTUNER_* environment variables)",
)
