"""The time budget (``--timeout``): trials until the reserve, the cost model, and a command that ends on time."""

from __future__ import annotations

import json
import math
import time

import pytest
import yaml
from conftest import default_ending

from automtl.config import DEFAULT_TRIALS, SearchConfig
from automtl.core.trial import TrialPruned, TrialRecord
from automtl.run.budget import EXPORT_SECONDS, INITIAL_SHARE, MAX_SHARE, Budget, export_prior
from automtl.training.cost import CostModel, fit, measured


def _record(number: int, score: float, train_seconds: float, epochs: int = 10, best_epoch: int = 8,
            state: str = "complete") -> TrialRecord:
    return TrialRecord(number, state, score if state == "complete" else None, {}, {}, train_seconds + 0.5,
                       best_epoch=best_epoch, cost=measured(train_seconds, epochs, 1000, 5000))


def test_the_trial_count_is_unbounded_only_when_time_is_the_budget():
    assert SearchConfig().max_trials == DEFAULT_TRIALS and not SearchConfig().time_is_budget
    timed = SearchConfig(timeout=600)
    assert timed.time_is_budget and timed.max_trials > 100_000
    both = SearchConfig(timeout=600, trials=7)  # a count the user gave still rules
    assert both.max_trials == 7 and not both.time_is_budget


def test_the_cost_model_learns_how_epoch_time_grows_with_weights():
    costs = [measured(1e-6 * w ** 0.8 * 2000 * 10, 10, 2000, w) for w in (1_000, 10_000, 100_000, 1_000_000)]
    model = fit(costs, max_epochs=30, complete_epochs=[10, 12, 20])
    assert model is not None and model.exponent == pytest.approx(0.8, abs=1e-3)
    assert model.epochs == 12  # the median complete trial's length, not the epoch limit
    assert model.epoch_seconds(2000, 50_000) == pytest.approx(1e-6 * 50_000 ** 0.8 * 2000, rel=1e-2)
    assert model.trial_seconds(2000, 50_000, epochs=5) == pytest.approx(5 * model.epoch_seconds(2000, 50_000))
    assert CostModel.from_json(json.loads(json.dumps(model.to_json()))) == model  # crosses to the trial process
    assert fit([], 30) is None
    one = fit(costs[:1], 30)  # too few sizes to fit the exponent: the default, sub-linear
    assert one is not None and one.epochs == 30 and 0 < one.exponent < 1


def test_a_configuration_that_cannot_finish_in_the_time_left_is_not_started():
    from automtl.training.runner import check_predicted_cost

    model = CostModel(math.log(1e-3), 0.0, 10).to_json()  # 1 s per epoch on 1,000 rows
    check_predicted_cost(model, 1000, 5000, 30, time.time() + 10)  # its shortest plan (3 epochs) fits: starts
    check_predicted_cost(None, 1000, 5000, 30, time.time() + 1)  # nothing measured yet: starts
    with pytest.raises(TrialPruned, match=r"not started: 3 epoch\(s\) of its 5,000 weights on 1,000 rows would "
                                          r"take about 3 s, and [0-2] s are left"):
        check_predicted_cost(model, 1000, 5000, 30, time.time() + 2)


def test_a_trial_plans_its_epochs_to_fit_its_share_of_the_budget():
    from automtl.training.cost import MIN_PLANNED_EPOCHS, EpochPlan

    plan = EpochPlan(30, seconds=20.0)
    plan.done(4.0)  # the first epoch traces the graph: slower
    assert plan.planned == 5  # 20 s at 4 s an epoch
    plan.done(2.0)
    assert plan.planned == 9  # the second epoch measures the real pace: 4 + 2 + 7 x 2 s
    plan.done(1.0)
    assert plan.planned == 9  # later, never upwards (the learning rate would rise again)
    plan.done(4.0)
    assert plan.planned == 7  # but downwards: 11 s so far, 9 s left at about 2.3 s an epoch: 3 more
    assert "7 of 30 epochs planned" in plan.note
    tight = EpochPlan(30, seconds=1.0)
    tight.done(5.0)
    assert tight.planned == MIN_PLANNED_EPOCHS  # never below the minimum: a trial that starts trains
    free = EpochPlan(30)
    free.done(100.0)
    assert free.planned == 30 and free.note == ""


def test_each_trial_gets_a_share_so_that_the_planned_trials_fit():
    budget = Budget(deadline=time.time() + 1000, seconds=1000, tasks=1, max_epochs=30, planned_trials=10)
    left = budget.trials_left([])
    assert budget.allowance([]) == pytest.approx(left / 10, rel=0.01)
    records = [_record(i, 0.5, 1.0) for i in range(9)]
    assert budget.allowance(records) == pytest.approx(budget.trials_left(records) / 2, rel=0.01)
    assert Budget(None, None, 1, 30).allowance([]) is None


@pytest.fixture
def idle(monkeypatch):
    """A machine with nothing else running: an export is planned at EXPORT_SECONDS."""
    monkeypatch.setattr("automtl.run.budget.os.getloadavg", lambda: (0.5, 0.5, 0.5))


def test_an_export_is_planned_slower_on_a_busy_machine(monkeypatch):
    monkeypatch.setattr("automtl.run.budget.os.cpu_count", lambda: 2)
    monkeypatch.setattr("automtl.run.budget.os.getloadavg", lambda: (1.5, 1.0, 1.0))
    assert export_prior() == EXPORT_SECONDS  # under one job per core: as measured idle
    monkeypatch.setattr("automtl.run.budget.os.getloadavg", lambda: (10.0, 8.0, 6.0))
    assert export_prior() == pytest.approx(5 * EXPORT_SECONDS)  # five jobs per core: five times as long
    budget = Budget(deadline=time.time() + 600, seconds=600, tasks=1, max_epochs=30)
    assert budget.end_costs([_record(0, 0.8, 20.0)])["export"] == pytest.approx(5 * EXPORT_SECONDS)
    budget.export_seconds = 7.0  # once best/'s export was measured, that is what counts
    assert budget.end_costs([_record(0, 0.8, 20.0)])["export"] == 7.0


def test_the_reserve_follows_the_measured_costs_and_caps_its_share(idle):
    budget = Budget(deadline=time.time() + 600, seconds=600, tasks=2, max_epochs=30, refit=True, refit_rows=1.25,
                    baselines=True, ensemble=True)
    assert budget.reserve([]) == pytest.approx(INITIAL_SHARE * 600)  # nothing measured yet
    records = [_record(0, 0.8, 20.0), _record(1, 0.9, 10.0)]
    costs = budget.end_costs(records)
    # the best trial (#1) trained 10 epochs in 10 s and kept epoch 8: a refit on 1.25x the rows
    assert costs["refit"] == pytest.approx(8 * 1.0 * 1.25)
    assert costs["baselines"] == pytest.approx(2 * 10.0)  # each task alone, about one trial
    assert costs["export"] == EXPORT_SECONDS and costs["ensemble"] > EXPORT_SECONDS
    assert budget.reserve(records) == pytest.approx(sum(costs.values()))
    assert budget.trial_deadline(records) == pytest.approx(budget.deadline - sum(costs.values()))
    # costly trials: the baselines go first, and never more than MAX_SHARE is kept
    slow = [_record(0, 0.9, 400.0, epochs=10, best_epoch=10), _record(1, 0.8, 300.0)]
    assert budget.reserve(slow) == pytest.approx(MAX_SHARE * 600)
    fits, cost = budget.fits("baselines", slow, after=("ensemble", "refit", "export"))
    assert not fits and cost == pytest.approx(800.0)


def test_no_trial_starts_once_even_the_cheapest_would_not_fit():
    records = [_record(0, 0.9, 30.0)]
    reserve = Budget(time.time(), 600, 1, 30).reserve(records)
    budget = Budget(deadline=time.time() + reserve + 20, seconds=600, tasks=1, max_epochs=30)
    assert budget.trials_left(records) == 0.0  # 20 s left, the only trial took 30 s
    assert 40 < Budget(time.time() + reserve + 50, 600, 1, 30).trials_left(records) <= 50
    assert Budget(None, None, 1, 30).trials_left(records) is None


def test_pruned_trials_teach_the_cost_model_too():
    pruned = TrialPruned("pruned at epoch 3", measured(3.0, 3, 500, 100))
    assert pruned.cost["epoch_seconds"] == 1.0 and str(pruned) == "pruned at epoch 3"


@pytest.mark.e2e
def test_a_timed_search_runs_as_many_trials_as_fit_and_ends_on_time_with_best_and_ensemble(
        write_experiment, cli, monkeypatch):
    """No trial count: the deadline decides (the default count, made tiny here, no longer caps it)."""
    from automtl import config

    monkeypatch.setattr(config, "DEFAULT_TRIALS", 2)
    path = write_experiment()
    exp = default_ending(yaml.safe_load(path.read_text()))
    del exp["search"]["trials"]
    exp["search"].update(epochs=4, patience=None)
    path.write_text(yaml.safe_dump(exp))
    import tensorflow  # noqa: F401 - loaded before the clock starts, as a warm test process has it

    timeout = 50.0
    started = time.time()
    result = cli("search", "--config", path, "--timeout", timeout)
    wall = time.time() - started
    assert result.exit_code == 0, result.output
    assert "as many trials as fit in the time" in result.output
    assert "left for trials" in result.output  # each trial line says the time left and how many more fit
    run = path.parent / "run"
    trials = json.loads((run / "trials.json").read_text())["trials"]
    assert len([t for t in trials if t["state"] == "complete"]) > 2, result.output
    assert all(t["cost"]["epoch_seconds"] > 0 for t in trials if t["state"] == "complete")
    assert (run / "best" / "saved_model" / "saved_model.pb").exists()
    assert (run / "ensemble" / "saved_model" / "saved_model.pb").exists(), result.output
    # the deadline covers the whole command (a loaded CI machine gets some slack beyond the 10 % target)
    assert wall < timeout * 1.1 + 10, wall


def test_a_cross_validated_run_plans_each_exported_model_on_every_row(idle):
    """k folds of (k-1)/k rows each: one model on every row costs 1/(k-1) of a trial's epoch."""
    budget = Budget(deadline=time.time() + 600, seconds=600, tasks=1, max_epochs=30, folds=5)
    records = [_record(0, 0.9, 10.0), _record(1, 0.8, 10.0)]  # 1 s per 5-fold epoch, best epoch 8
    costs = budget.end_costs(records)
    assert costs["refit"] == pytest.approx(8 * 1.0 / 4)
    assert costs["ensemble"] == pytest.approx(2 * EXPORT_SECONDS + 2 * costs["refit"])  # each member retrained


def test_a_baseline_trains_the_epochs_its_best_trial_was_planned_to(monkeypatch, tmp_path):
    """Each task alone with the best trial's configuration: its epochs too, planned down under a time budget."""
    from types import SimpleNamespace

    from automtl.run import baselines

    class Handed(Exception):
        pass

    def train(s, task, folder, handle):
        raise Handed(handle)

    monkeypatch.setattr(baselines, "_train", train)
    monkeypatch.setattr(baselines, "foreign_parameters", lambda s, task: {})
    task = SimpleNamespace(name="kind")
    s = SimpleNamespace(run_dir=tmp_path, checked=SimpleNamespace(tasks=[task]), prepared=SimpleNamespace(folds=[]))
    best = TrialRecord(3, "complete", 0.9, {}, {}, 10.0, best_epoch=4, cost={**measured(9.0, 6, 100, 50),
                                                                               "planned_epochs": 6})
    with pytest.raises(Handed) as handed:
        baselines._auto(s, best, task, None)
    assert handed.value.args[0].epochs == 6
    best.cost.pop("planned_epochs")  # a trial from before epoch plans: the search's epochs
    with pytest.raises(Handed) as handed:
        baselines._auto(s, best, task, None)
    assert handed.value.args[0].epochs is None
