"""Trainer behaviour a search relies on: early stopping restores the best epoch, streaming, pruning reports."""

from __future__ import annotations

import numpy as np
import pytest

from automtl_classification import ClassificationTask
from automtl_regression import RegressionTask
from automtl_tabular import TabularInput
from conftest import make_table
from helpers import prepared, split


def setup(n=400):
    encs = [TabularInput("features", {"numeric": ["x*"], "categorical": ["city"]})]
    tasks = [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]
    train, valid = prepared(encs, tasks, *split(make_table(n)))
    return encs, tasks, train, valid


def trainer_for(params, streaming=None, n=400):
    import keras

    from automtl.core.trial_params import TrialParams
    from automtl.model.assemble import build_model
    from automtl.training.trainer import Trainer

    encs, tasks, train, valid = setup(n)
    keras.utils.set_random_seed(0)
    p = TrialParams(params)
    return Trainer(build_model(encs, tasks, p), tasks, p, train, valid, {"price": 1, "kind": 1}, streaming=streaming)


def test_early_stopping_restores_the_best_epoch():
    # A learning rate that overshoots after a few epochs makes later epochs worse.
    trainer = trainer_for({"learning_rate": 0.3, "strategy": "joint"})
    fit = trainer.fit(15, patience=3)
    objectives = [row["objective"] for row in fit.history]
    assert fit.best_epoch == int(np.nanargmax(objectives)) + 1
    assert len(fit.history) <= 15
    _, _, now = trainer.evaluate()
    assert now == pytest.approx(fit.objective, abs=1e-5)  # the model holds the best epoch's weights


def test_report_once_per_epoch_and_stop_when_told():
    trainer = trainer_for({"strategy": "joint"})
    seen = []

    class Stop(Exception):
        pass

    def report(result):
        seen.append(result.epoch)
        if result.epoch == 3:
            raise Stop

    with pytest.raises(Stop):
        trainer.fit(10, report=report)
    assert seen == [1, 2, 3]


@pytest.mark.parametrize("strategy", ["joint", "alternating"])
def test_streamed_path_trains_like_the_in_memory_path(strategy):
    streamed = trainer_for({"strategy": strategy, "learning_rate": 0.01}, streaming=True)
    assert streamed.streaming
    fit = streamed.fit(15)
    assert fit.metrics["kind"]["accuracy"] > 0.8 and fit.metrics["price"]["skill"] > 0.6


def test_size_decides_between_in_memory_and_streaming(monkeypatch):
    from automtl.training import trainer as trainer_module

    assert not trainer_for({}).streaming
    monkeypatch.setattr(trainer_module, "INMEMORY_LIMIT_MB", 0.001)
    assert trainer_for({}).streaming


def test_own_path_tasks_keep_their_best_epoch_and_the_ensemble_sees_that_model():
    """Sharing ``none``: each task's tower restores its own best epoch; the kept validation predictions
    (what ensembles are selected on) are those of the model so made, not of the joint best epoch."""
    trainer = trainer_for({"learning_rate": 0.05, "strategy": "joint", "sharing": "none", "trunk.units": 16}, n=200)
    fit = trainer.fit(12)
    per_task = fit.history[-1].get("task_best_epochs")
    assert per_task is not None and set(per_task) == {"price", "kind"}
    assert any(e != fit.best_epoch for e in per_task.values())  # a tower's best epoch is not the joint one
    assert fit.metrics["price"]["rmse"] == pytest.approx(min(r["price.rmse"] for r in fit.history), abs=1e-5)
    assert fit.metrics["kind"]["accuracy"] == pytest.approx(max(r["kind.accuracy"] for r in fit.history), abs=1e-5)
    assert set(fit.valid_pred) == {"price", "kind"}
    _, _, objective = trainer.evaluate()  # the model now in memory: the towers' best epochs
    assert objective == pytest.approx(fit.objective, abs=1e-5)
    for task, values in trainer.last_pred.items():
        np.testing.assert_allclose(fit.valid_pred[task], values, rtol=1e-5, atol=1e-6)
