"""search.pruner: which pruner runs, its warm-up, no pruning before 5 completed trials, and what backends refuse."""

from __future__ import annotations

import optuna
import pytest

from automtl.backends.optuna.backend import PRUNER_STARTUP_TRIALS, make_pruner, pruner_startup
from automtl.config import SearchConfig
from helpers import assert_user_error


def test_defaults_follow_the_backend_and_the_epoch_budget():
    s = SearchConfig(epochs=40)
    assert (s.pruner, s.pruner_warmup) == ("median", 10)
    assert SearchConfig(backend="keras-tuner").pruner == "none"
    assert SearchConfig(objective="pareto").pruner == "none"  # Optuna cannot prune multi-objective trials
    assert SearchConfig(epochs=2).pruner_warmup == 1


def test_what_each_pruner_is():
    assert isinstance(make_pruner(SearchConfig(pruner="none")), optuna.pruners.NopPruner)
    median = make_pruner(SearchConfig(epochs=40))
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert (median._n_startup_trials, median._n_warmup_steps) == (PRUNER_STARTUP_TRIALS, 10)
    # a fifth of a larger trial count completes before any pruning
    assert make_pruner(SearchConfig(trials=50))._n_startup_trials == pruner_startup(SearchConfig(trials=50)) == 10
    assert pruner_startup(SearchConfig(trials=12)) == PRUNER_STARTUP_TRIALS
    # under a time budget the trial count is nominal: the pruner starts after a fixed few trials
    timed = SearchConfig(timeout=600)
    assert timed.max_trials > 10_000 and pruner_startup(timed) == PRUNER_STARTUP_TRIALS
    assert make_pruner(timed)._n_startup_trials == PRUNER_STARTUP_TRIALS
    asha = make_pruner(SearchConfig(pruner="asha", epochs=27, pruner_warmup=2))
    assert isinstance(asha, optuna.pruners.SuccessiveHalvingPruner)
    assert (asha._min_resource, asha._reduction_factor) == (2, 3)
    hyperband = make_pruner(SearchConfig(pruner="hyperband", epochs=27, pruner_warmup=3))
    # a subclass, so Optuna's samplers still draw each bracket from its own history
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert (hyperband._min_resource, hyperband._max_resource) == (3, 27)


def _study(pruner: optuna.pruners.BasePruner, completed: int) -> optuna.Study:
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(completed):
        trial = study.ask()
        for step in range(1, 13):
            trial.report(0.9, step)
            trial.should_prune()  # as every epoch's report does
        study.tell(trial, 0.9)
    return study


@pytest.mark.parametrize("pruner", ["median", "hyperband", "asha"])
def test_no_pruning_before_five_completed_trials_nor_before_the_warmup(pruner):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    settings = SearchConfig(pruner=pruner, epochs=12, pruner_warmup=3)

    def poor_trial(study: optuna.Study, steps: int) -> bool:
        trial = study.ask()
        for step in range(1, steps + 1):
            trial.report(0.1, step)  # far below every completed trial
            if trial.should_prune():
                return True
        return False

    assert not poor_trial(_study(make_pruner(settings), PRUNER_STARTUP_TRIALS - 1), 12)
    big = SearchConfig(pruner=pruner, epochs=12, pruner_warmup=3, trials=60)  # 12 completed trials first
    assert not poor_trial(_study(make_pruner(big), 11), 12)
    assert poor_trial(_study(make_pruner(big), 12), 12)
    assert not poor_trial(_study(make_pruner(settings), 8), 2)  # inside the warm-up
    assert poor_trial(_study(make_pruner(settings), 8), 9)


def test_backends_refuse_pruners_they_cannot_run(cli, write_experiment):
    result = cli("search", "--config", write_experiment(), "--backend", "keras-tuner", "--pruner", "median")
    assert_user_error(result, "search: backend 'keras-tuner' has no pruner 'median'", "must be one of: none")
    result = cli("search", "--config", write_experiment(), "--objective", "pareto", "--pruner", "hyperband")
    assert_user_error(result, "cannot prune the trials of a multi-objective (pareto) search")
