"""Both training strategies learn; missing labels are masked out of losses and metrics."""

from __future__ import annotations

import numpy as np
import pytest

from automtl_classification import ClassificationTask
from automtl_regression import RegressionTask
from automtl_tabular import TabularInput
from conftest import make_table
from helpers import prepared, split, train_once


def plugins():
    enc = TabularInput("features", {"numeric": ["x*"], "categorical": ["city"]})
    return [enc], [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]


@pytest.mark.parametrize("strategy", ["joint", "alternating"])
def test_strategy_learns_both_tasks(strategy):
    encs, tasks = plugins()
    train, valid = prepared(encs, tasks, *split(make_table(600)))
    _, _, fit = train_once(encs, tasks, train, valid, {"strategy": strategy, "learning_rate": 0.01}, epochs=25)
    assert fit.metrics["kind"]["accuracy"] > 0.85
    assert fit.metrics["price"]["skill"] > 0.7  # RMSE well under the target's spread
    assert fit.history and len(fit.history) <= 25


def test_alternating_updates_only_the_chosen_head():
    import tensorflow as tf

    from automtl.core.trial_params import TrialParams
    from automtl.model.assemble import build_model
    from automtl.training.strategies.alternating import AlternatingTraining
    from automtl.training.trainer import to_tensors

    encs, tasks = plugins()
    train, _ = prepared(encs, tasks, *split(make_table(100)))
    params = TrialParams({"strategy": "alternating", "learning_rate": 0.01})
    assembled = build_model(encs, tasks, params)
    step = AlternatingTraining(assembled, tasks, params, train, tf.random.Generator.from_seed(0),
                               np.random.default_rng(0), lambda x, y, m: (x, y, m))
    price_head = [v.numpy().copy() for v in assembled.heads["price"].trainable_variables]
    kind_head = [v.numpy().copy() for v in assembled.heads["kind"].trainable_variables]
    shared = [v.numpy().copy() for v in assembled.shared_variables()]
    step.branch(1, to_tensors(train.x), to_tensors(train.y), to_tensors(train.mask))  # the "kind" task
    unchanged = lambda before, now: all(np.array_equal(b, v.numpy()) for b, v in zip(before, now))
    assert unchanged(price_head, assembled.heads["price"].trainable_variables)
    assert not unchanged(kind_head, assembled.heads["kind"].trainable_variables)
    assert not unchanged(shared, assembled.shared_variables())


def test_masked_mean_ignores_unlabelled_entries():
    import tensorflow as tf

    from automtl.training.losses import masked_mean

    losses = tf.constant([1.0, 2.0, 1000.0, 3.0])
    mask = tf.constant([1.0, 1.0, 0.0, 1.0])
    assert masked_mean(losses, mask).numpy() == pytest.approx(2.0)
    assert masked_mean(losses, tf.zeros([4])).numpy() == 0.0


def test_missing_labels_are_masked_not_filled():
    frame = make_table(600)
    rng = np.random.default_rng(1)
    missing_price = rng.random(len(frame)) < 0.4
    missing_kind = rng.random(len(frame)) < 0.4
    frame.loc[missing_price, "price"] = np.nan
    frame.loc[missing_kind, "kind"] = None
    encs, tasks = plugins()
    train, valid = prepared(encs, tasks, *split(frame))
    assert train.mask["price"].sum() == pytest.approx((~np.isnan(frame["price"])).sum() * 0.75, rel=0.1)
    assert np.all(train.y["price"][train.mask["price"] == 0] == 0)  # no fake label, only a 0 placeholder
    _, _, fit = train_once(encs, tasks, train, valid, {"strategy": "joint", "learning_rate": 0.01}, epochs=25)
    assert fit.metrics["price"]["labelled"] == valid.mask["price"].sum()
    assert fit.metrics["kind"]["labelled"] == valid.mask["kind"].sum()
    assert fit.metrics["kind"]["accuracy"] > 0.8 and fit.metrics["price"]["skill"] > 0.6


def test_masked_label_values_do_not_change_training():
    """Whatever sits under the mask, training follows the same path."""
    encs, tasks = plugins()
    train, valid = prepared(encs, tasks, *split(make_table(200)))
    train.mask["price"][::2] = 0.0
    _, _, first = train_once(encs, tasks, train, valid, {"strategy": "joint"}, epochs=3)
    train.y["price"][::2] = 1e6  # garbage where there is no label
    _, _, second = train_once(encs, tasks, train, valid, {"strategy": "joint"}, epochs=3)
    assert first.history[-1]["loss.price"] == pytest.approx(second.history[-1]["loss.price"], rel=1e-5)


def test_alternating_with_disjoint_label_sets():
    frame = make_table(600)
    half = np.arange(len(frame)) % 2 == 0
    frame.loc[half, "price"] = np.nan      # price labelled on odd rows only
    frame.loc[~half, "kind"] = None        # kind labelled on even rows only
    encs, tasks = plugins()
    train, valid = prepared(encs, tasks, *split(frame))
    assert not np.any((train.mask["price"][:, 0] > 0) & (train.mask["kind"] > 0))
    _, _, fit = train_once(encs, tasks, train, valid, {"strategy": "alternating", "learning_rate": 0.01}, epochs=25)
    assert fit.metrics["kind"]["accuracy"] > 0.8 and fit.metrics["price"]["skill"] > 0.6


def test_nan_loss_fails_the_trial():
    from automtl.errors import TrialFailed

    encs, tasks = plugins()
    train, valid = prepared(encs, tasks, *split(make_table(100)))
    with pytest.raises(TrialFailed, match="non-finite"):
        train_once(encs, tasks, train, valid, {"strategy": "joint", "learning_rate": 1e30}, epochs=5)
