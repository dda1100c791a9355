"""Each loss weighting method changes the effective weights as its paper says; MMoE trains and exports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from automtl.core import registry
from automtl.core.trial_params import TrialParams
from automtl.training.strategies.alternating import sampling_probabilities
from automtl_classification import ClassificationTask
from automtl_regression import RegressionTask
from automtl_tabular import TabularInput
from conftest import make_table
from helpers import prepared, split, train_once


def method(name, tasks, **values):
    """A weighting method built as the trainer builds it: from its registry entry and the trial's values."""
    return registry.member("weighting", name)(tasks, TrialParams(values))


def test_static_uses_the_searched_weights():
    w = method("static", ["a", "b"], **{"loss_weight.a": 0.5, "loss_weight.b": 3.0})
    assert w.combine(tf.constant([2.0, 1.0])).numpy() == pytest.approx(4.0)
    np.testing.assert_allclose(w.effective_weights(), [0.5, 3.0])


def test_max_puts_all_weight_on_the_largest_loss():
    w = method("max", ["a", "b", "c"])
    losses = tf.Variable([1.0, 3.0, 2.0])
    with tf.GradientTape() as tape:
        total = w.combine(losses)
    assert total.numpy() == pytest.approx(3.0)
    np.testing.assert_allclose(tape.gradient(total, losses).numpy(), [0, 1, 0])
    np.testing.assert_allclose(w.effective_weights(), [0, 1, 0])


def test_uncertainty_gives_the_noisier_target_a_smaller_weight():
    rng = np.random.default_rng(0)
    n = 800
    x = rng.normal(size=(n, 3))
    frame = pd.DataFrame(x, columns=["x0", "x1", "x2"])
    frame["clean"] = x[:, 0] + 0.05 * rng.normal(size=n)  # almost noiseless
    frame["noisy"] = x[:, 1] + 2.0 * rng.normal(size=n)   # mostly noise
    encs = [TabularInput("f", {"numeric": ["x*"]})]
    tasks = [RegressionTask("clean", {"target": "clean"}), RegressionTask("noisy", {"target": "noisy"})]
    train, valid = prepared(encs, tasks, *split(frame))
    _, trainer, fit = train_once(encs, tasks, train, valid,
                                 {"weighting": "uncertainty", "learning_rate": 0.02, "dropout": 0.0}, epochs=30)
    clean, noisy = trainer.weighting.effective_weights()
    assert clean > 3 * noisy, (clean, noisy)
    assert fit.history[-1]["weight.clean"] == pytest.approx(clean)


def test_gradnorm_lowers_the_weight_of_the_task_with_larger_gradients():
    w = method("gradnorm", ["a", "b"], gradnorm_alpha=1.5)
    for _ in range(20):
        w.after_step(tf.constant([1.0, 1.0]), tf.constant([10.0, 1.0]))
    a, b = w.effective_weights()
    assert a < 1 < b and a + b == pytest.approx(2.0)


def test_gradnorm_raises_the_weight_of_the_task_that_trains_slower():
    w = method("gradnorm", ["fast", "slow"], gradnorm_alpha=1.5)
    w.after_step(tf.constant([1.0, 1.0]), tf.constant([1.0, 1.0]))  # initial losses
    for _ in range(20):
        w.after_step(tf.constant([0.1, 0.9]), tf.constant([1.0, 1.0]))
    fast, slow = w.effective_weights()
    assert slow > 1 > fast and fast + slow == pytest.approx(2.0)


def test_dwa_weights_the_task_whose_loss_falls_slower():
    w = method("dwa", ["a", "b"], dwa_temperature=0.5)
    w.end_epoch(np.array([1.0, 1.0]))
    np.testing.assert_allclose(w.effective_weights(), [1, 1])  # equal for the first epochs
    w.end_epoch(np.array([0.5, 0.95]))
    a, b = w.effective_weights()
    assert b > a and a + b == pytest.approx(2.0)


@pytest.mark.e2e
@pytest.mark.parametrize("method", ["gradnorm", "dwa", "uncertainty", "max"])
def test_every_weighting_trains_end_to_end(method):
    encs = [TabularInput("features", {"numeric": ["x*"], "categorical": ["city"]})]
    tasks = [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]
    train, valid = prepared(encs, tasks, *split(make_table(400)))
    _, _, fit = train_once(encs, tasks, train, valid, {"weighting": method, "learning_rate": 0.01}, epochs=12)
    assert fit.metrics["kind"]["accuracy"] > 0.8
    assert np.isfinite(fit.history[-1]["weight.price"])


def test_proportional_sampling_follows_label_counts():
    np.testing.assert_allclose(sampling_probabilities([1, 1], [300, 100], "proportional"), [0.75, 0.25])
    np.testing.assert_allclose(sampling_probabilities([1, 3], [300, 100], "uniform"), [0.25, 0.75])
    np.testing.assert_allclose(sampling_probabilities([1, 1], [10, 0], "uniform"), [1.0, 0.0])


def test_per_task_learning_rates_reach_the_optimizers():
    from automtl.core.trial_params import TrialParams
    from automtl.model.assemble import build_model
    from automtl.training.trainer import Trainer

    encs = [TabularInput("features", {"numeric": ["x*"]})]
    tasks = [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]
    train, valid = prepared(encs, tasks, *split(make_table(100)))
    params = TrialParams({"strategy": "alternating", "learning_rate": 0.001, "learning_rate.kind": 0.02})
    trainer = Trainer(build_model(encs, tasks, params), tasks, params, train, valid, {"price": 1, "kind": 1})
    rates = [float(np.asarray(o.learning_rate)) for o in trainer.strategy.optimizers]
    assert rates == pytest.approx([0.001, 0.02])


@pytest.mark.e2e
def test_mmoe_trains_saves_and_exports(tmp_path):

    from automtl.core.trial import TrialRecord
    from automtl.export.savedmodel import export_trial

    encs = [TabularInput("features", {"numeric": ["x*"], "categorical": ["city"]})]
    tasks = [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]
    train, valid = prepared(encs, tasks, *split(make_table(400)))
    assembled, trainer, fit = train_once(
        encs, tasks, train, valid, {"sharing": "mmoe", "experts": 3, "expert_units": 16, "weighting": "gradnorm"}, epochs=8)
    assert any(l.name.startswith("gate_") for l in assembled.model.layers)
    assert fit.metrics["kind"]["accuracy"] > 0.75
    assembled.model.save(tmp_path / "m.keras")
    out = export_trial(tmp_path / "m.keras", encs, tasks, TrialRecord(0, "complete", fit.objective, {}, {}, 1.0),
                       tmp_path / "best")
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    feed = {"features": tf.constant(valid.x["features"]), "city": tf.constant(valid.x["city"].astype(str))}
    served = serve(**feed)
    raw = trainer.predict(trainer._valid_x, len(valid))
    np.testing.assert_allclose(served["price.value"].numpy(), raw["price"][:, 0] * tasks[0].std[0] + tasks[0].mean[0],
                               rtol=1e-4, atol=1e-3)
