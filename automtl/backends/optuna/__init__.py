"""The Optuna backend: TPE, random or NSGA-II sampling over shared, resumable study storage."""

from automtl.backends.base import BackendSpec

SPEC = BackendSpec(
    name="optuna",
    algorithms=("tpe", "random", "nsga2"),
    default_algorithm="tpe",
    engine="automtl.backends.optuna.backend:OptunaBackend",
    multi_objective=True,
    pruning="Optuna's median, Hyperband or successive-halving (asha) pruner, per epoch (search.pruner)",
    pruners=("median", "hyperband", "asha", "none"),
    parallel_workers=True,
    promotes=True,
    optuna_study=True,
    distributed="several machines share one PostgreSQL --storage",
    check="automtl.backends.optuna.location:check_storage",
    store="automtl.backends.optuna.store:STORE",
    pruner_startup="automtl.backends.optuna.backend:pruner_startup",
)
