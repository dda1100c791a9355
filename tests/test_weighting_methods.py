"""The loss-balancing methods from the recent literature: each one's update rule and the property its paper claims.

si, famo and dbmtl are invariant to a task's loss scale; PCGrad's two-task
update never conflicts with either task; CAGrad's update maximises the worst
task's improvement within its ball; static weights can live on the simplex.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from automtl.core import registry
from automtl.core.trial_params import TrialParams
from automtl.errors import ConfigError
from automtl.space import parse_space
from automtl_classification import ClassificationTask
from automtl_regression import RegressionTask
from automtl_tabular import TabularInput
from conftest import make_table
from helpers import prepared, split, train_once


def method(name, tasks, **values):
    """A weighting method built as the trainer builds it: from its registry entry and the trial's values."""
    return registry.member("weighting", name)(tasks, TrialParams(values))


def conflicting(rng, dim=50, tasks=2):
    """Random task gradients of very different norms, some pairs pointing against each other."""
    while True:
        g = rng.normal(size=(tasks, dim)) * np.logspace(0, 2, tasks)[:, None]
        gram = g @ g.T
        if (gram[np.triu_indices(tasks, 1)] < 0).any():
            return g


# -- scale invariance, through the real training step -------------------------------------------
class ScaledRegression(RegressionTask):
    """Squared error in the target's units times a million: a loss on a very different scale."""

    factor = 1.0

    def loss(self, y_true, y_pred):
        return super().loss(y_true, y_pred) * self.factor


def weights_after_steps(name: str, factor: float, steps: int = 5) -> list[np.ndarray]:
    import keras

    from automtl.model.assemble import build_model
    from automtl.training.trainer import Trainer

    encs = [TabularInput("features", {"numeric": ["x*"], "categorical": ["city"]})]
    price = ScaledRegression("price", {"target": "price"})
    price.factor = factor
    tasks = [price, ClassificationTask("kind", {"target": "kind"})]
    train, valid = prepared(encs, tasks, *split(make_table(200)))
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    params = TrialParams({"weighting": name, "dropout": 0.0, "trunk.units": 16, "head.units": 8})
    assembled = build_model(encs, tasks, params)
    trainer = Trainer(assembled, tasks, params, train, valid, {"price": 1.0, "kind": 1.0}, seed=0, encoders=encs)
    x = {k: tf.constant(v[:64]) for k, v in train.x.items()}
    y = {k: tf.constant(v[:64]) for k, v in train.y.items()}
    m = {k: tf.constant(v[:64]) for k, v in train.mask.items()}
    step = tf.function(trainer.strategy.step)
    for _ in range(steps):
        step(x, y, m)
    return assembled.model.get_weights()


@pytest.mark.parametrize("name", ["si", "dbmtl"])
def test_training_is_invariant_to_a_task_loss_scale(name):
    plain, scaled = weights_after_steps(name, 1.0), weights_after_steps(name, 1e6)
    for a, b in zip(plain, scaled):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5)


def test_famo_update_direction_is_invariant_to_a_task_loss_scale():
    """FAMO normalises by ``c = sum z_i / L_i``: the direction is scale-free, its length is not (Adam absorbs it)."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(2)])
    x, y = tf.random.normal([16, 3]), tf.random.normal([16, 2])

    def gradient(factor):
        w = method("famo", ["a", "b"])
        w.logits.assign([0.3, -0.3])
        with tf.GradientTape() as tape:
            err = tf.reduce_mean(tf.square(model(x) - y), axis=0)
            total = w.combine(err * tf.constant([factor, 1.0]))
        return np.concatenate([g.numpy().ravel() for g in tape.gradient(total, model.trainable_variables)])

    plain, scaled = gradient(1.0), gradient(1e6)
    cosine = plain @ scaled / np.linalg.norm(plain) / np.linalg.norm(scaled)
    assert cosine == pytest.approx(1.0, abs=1e-5)


def test_static_weights_are_not_scale_invariant():
    """The contrast that makes the test above meaningful: equal weights follow the large loss."""
    plain, scaled = weights_after_steps("static", 1.0), weights_after_steps("static", 1e6)
    assert max(np.abs(a - b).max() for a, b in zip(plain, scaled)) > 1e-3


# -- si -----------------------------------------------------------------------------------------
def test_si_is_the_sum_of_log_losses_and_records_inverse_losses():
    w = method("si", ["a", "b"])
    losses = tf.Variable([2.0, 0.5])
    with tf.GradientTape() as tape:
        total = w.combine(losses)
    assert total.numpy() == pytest.approx(np.log(2.0) + np.log(0.5), abs=1e-6)
    np.testing.assert_allclose(tape.gradient(total, losses).numpy(), [0.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(w.epoch_record()["weight.a"], 0.5, rtol=1e-6)


# -- famo ---------------------------------------------------------------------------------------
def test_famo_gives_more_weight_to_the_task_whose_log_loss_fell_less():
    w = method("famo", ["fast", "slow"], famo_lr=0.05, famo_decay=0.0)
    for _ in range(10):
        w.after_update(tf.constant([1.0, 1.0]), tf.constant([0.5, 0.95]))
    losses = tf.Variable([1.0, 1.0])
    with tf.GradientTape() as tape:
        total = w.combine(losses)
    fast, slow = tape.gradient(total, losses).numpy()
    assert slow > 1 > fast and fast + slow == pytest.approx(2.0, rel=1e-5)  # weights on the simplex times T


def test_famo_balances_relative_not_absolute_decreases():
    """Equal log decreases (1 -> 0.5 and 1000 -> 500) leave the weights equal; the decay pulls logits to 0."""
    w = method("famo", ["a", "b"], famo_decay=0.01)
    for _ in range(20):
        w.after_update(tf.constant([1.0, 1000.0]), tf.constant([0.5, 500.0]))
    np.testing.assert_allclose(w.logits.numpy(), [0.0, 0.0], atol=1e-5)


def test_famo_ignores_a_task_without_labels_in_the_batch():
    w = method("famo", ["a", "b"])
    losses = tf.Variable([0.0, 0.7])  # task a has no labelled example in this batch
    with tf.GradientTape() as tape:
        total = w.combine(losses)
    np.testing.assert_allclose(tape.gradient(total, losses).numpy(), [0.0, 1.0], rtol=1e-5)  # the lone task: 1
    w.after_update(tf.constant([0.0, 0.7]), tf.constant([0.0, 0.6]))
    assert np.isfinite(w.logits.numpy()).all()


# -- dbmtl --------------------------------------------------------------------------------------
def test_dbmtl_rescales_every_task_gradient_to_the_largest_norm():
    w = method("dbmtl", ["small", "large"], dbmtl_beta=0.0)
    w.setup_gradients(3, None)
    g = tf.constant([[1.0, 0.0, 0.0], [0.0, 100.0, 0.0]])
    d = w.shared_update(g).numpy()
    np.testing.assert_allclose(d, [100.0, 100.0, 0.0], rtol=1e-5)


def test_dbmtl_averages_gradients_over_steps():
    beta = 0.9
    w = method("dbmtl", ["a", "b"], dbmtl_beta=beta, dbmtl_beta_sigma=0.0)
    w.setup_gradients(2, None)
    g = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    w.shared_update(g)
    w.shared_update(tf.zeros_like(g))  # second step: no new gradient, the average keeps beta of the first
    np.testing.assert_allclose(w.buffer.numpy(), beta * (1 - beta) * g.numpy(), rtol=1e-5)


def test_dbmtl_trains_on_log_losses():
    w = method("dbmtl", ["a", "b"])
    losses = tf.Variable([4.0, 0.25])
    with tf.GradientTape() as tape:
        terms = w.task_objectives(losses)
    np.testing.assert_allclose(tape.jacobian(terms, losses).numpy(), np.diag([0.25, 4.0]), rtol=1e-5)


# -- pcgrad -------------------------------------------------------------------------------------
def pcgrad_reference(g: np.ndarray, orders: list[list[int]]) -> np.ndarray:
    """The paper's algorithm on explicit vectors, visiting tasks in the given orders."""
    out = []
    for i, order in enumerate(orders):
        gi = g[i].copy()
        for j in order:
            dot = gi @ g[j]
            if dot < 0:
                gi -= dot / (g[j] @ g[j]) * g[j]
        out.append(gi)
    return np.sum(out, axis=0)


def test_pcgrad_update_never_conflicts_with_either_of_two_tasks():
    rng = np.random.default_rng(0)
    w = method("pcgrad", ["a", "b"])
    w.setup_gradients(50, tf.random.Generator.from_seed(0))
    for _ in range(20):
        g = conflicting(rng)
        d = w.shared_update(tf.constant(g, tf.float32)).numpy()
        assert (g @ d >= -1e-3 * np.abs(g @ d).max()).all()
        np.testing.assert_allclose(d, pcgrad_reference(g, [[0, 1], [0, 1]]), rtol=1e-4, atol=1e-3)
    record = w.epoch_record()
    assert record["conflict_share"] == 1.0 and record["grad_cosine"] < 0


def test_pcgrad_leaves_agreeing_gradients_alone_and_matches_the_paper_for_three_tasks():
    from automtl.training.weighting.pcgrad import projected_weights

    g = np.array([[1.0, 0.2, 0.0], [0.5, 1.0, 0.1], [0.2, 0.0, 1.0]])  # pairwise positive: no projection
    w = projected_weights(tf.constant(g @ g.T, tf.float32)).numpy()
    np.testing.assert_allclose(w, [1, 1, 1], rtol=1e-6)
    rng = np.random.default_rng(1)
    g = conflicting(rng, tasks=3)
    w = projected_weights(tf.constant(g @ g.T, tf.float64)).numpy()  # index order without a generator
    np.testing.assert_allclose(w @ g, pcgrad_reference(g, [[0, 1, 2]] * 3), rtol=1e-6, atol=1e-8)


# -- cagrad -------------------------------------------------------------------------------------
def cagrad_direction(g: np.ndarray, c: float) -> np.ndarray:
    from automtl.training.weighting.cagrad import conflict_averse_weights

    T = len(g)
    v = conflict_averse_weights(tf.constant(g @ g.T, tf.float32), c).numpy()
    return v @ g * (1 + c * c) / T  # undo the rescaling and the sum convention: the paper's d


@pytest.mark.parametrize("tasks", [2, 3, 4])
def test_cagrad_maximises_the_worst_improvement_within_its_ball(tasks):
    from scipy.optimize import minimize

    rng = np.random.default_rng(tasks)
    c = 0.5
    for _ in range(5):
        g = conflicting(rng, dim=20, tasks=tasks)
        g0 = g.mean(axis=0)
        d = cagrad_direction(g, c)
        assert np.linalg.norm(d - g0) <= c * np.linalg.norm(g0) * (1 + 1e-3)
        worst = (g @ d).min()
        assert worst >= (g @ g0).min()  # never worse for the worst task than plain averaging
        # the primal optimum by a generic solver: max_d min_i g_i.d within the ball
        r = c * np.linalg.norm(g0)
        x0 = np.concatenate([g0, [(g @ g0).min()]])
        res = minimize(lambda x: -x[-1], x0, method="SLSQP", constraints=[
            {"type": "ineq", "fun": lambda x: g @ x[:-1] - x[-1]},
            {"type": "ineq", "fun": lambda x: r * r - np.sum((x[:-1] - g0) ** 2)}], options={"maxiter": 500})
        assert worst >= res.x[-1] - 1e-3 * abs(res.x[-1]) - 1e-6


def test_cagrad_with_c_zero_is_the_plain_sum():
    from automtl.training.weighting.cagrad import conflict_averse_weights

    g = conflicting(np.random.default_rng(3), tasks=3)
    np.testing.assert_allclose(conflict_averse_weights(tf.constant(g @ g.T, tf.float32), 0.0).numpy(), [1, 1, 1],
                               rtol=1e-6)


# -- static weights on the simplex ---------------------------------------------------------------
def test_static_logits_give_weights_on_the_simplex():
    w = method("static", ["a", "b", "c"], **{"loss_logit.a": 1.0, "loss_logit.b": 0.0, "loss_logit.c": -1.0})
    weights = w.effective_weights()
    assert weights.sum() == pytest.approx(3.0)
    np.testing.assert_allclose(weights, 3 * np.exp([1, 0, -1]) / np.exp([1, 0, -1]).sum(), rtol=1e-6)
    shifted = method("static", ["a", "b", "c"], **{"loss_logit.a": 3.0, "loss_logit.b": 2.0, "loss_logit.c": 1.0})
    np.testing.assert_allclose(shifted.effective_weights(), weights, rtol=1e-6)  # only differences matter
    plain = method("static", ["a", "b"], **{"loss_weight.a": 0.5, "loss_weight.b": 3.0})
    np.testing.assert_allclose(plain.effective_weights(), [0.5, 3.0])  # the plain ranges keep working


def test_a_space_searches_weights_or_logits_not_both():
    raw = {"per_task": {"loss_weight": {"float": [0.2, 5.0]}, "loss_logit": {"float": [-2.0, 2.0]}}}
    with pytest.raises(ConfigError, match="space.yaml: loss_weight and loss_logit are alternatives"):
        parse_space(raw, "space.yaml", ["a", "b"])
    space = parse_space({"per_task": {"loss_logit": {"float": [-2.0, 2.0]}}}, "space.yaml", ["a", "b"])
    assert space.names() == ["loss_logit.a", "loss_logit.b"]


# -- training options on the per-task gradient step ------------------------------------------------
def test_gradient_manipulation_step_applies_decoupled_weight_decay():
    """AdamW's ``var -= lr * weight_decay * var`` reaches shared and head kernels alike in the per-task gradient
    step (the same for every gradient manipulation): one step with and one
    without weight decay, from the same start on the same batch, differ by exactly that on every kernel."""
    import keras

    from automtl.model.assemble import build_model
    from automtl.training.trainer import Trainer

    encs = [TabularInput("features", {"numeric": ["x*"], "categorical": ["city"]})]
    tasks = [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]
    train, valid = prepared(encs, tasks, *split(make_table(200)))
    lr = 0.01
    after, before = {}, None
    for decay in (0.0, 0.3):
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        params = TrialParams({"weighting": "pcgrad", "dropout": 0.0, "trunk.units": 16, "head.units": 8,
                              "learning_rate": lr, "weight_decay": decay})
        assembled = build_model(encs, tasks, params)
        trainer = Trainer(assembled, tasks, params, train, valid, {"price": 1.0, "kind": 1.0}, seed=0, encoders=encs)
        kernels = [v for v in assembled.model.trainable_variables if len(v.shape) == 2]
        shared = {id(v) for v in assembled.shared_variables()}
        assert any(id(v) in shared for v in kernels) and any(id(v) not in shared for v in kernels)
        before = [v.numpy() for v in kernels]
        batch = [{k: tf.constant(v[:64]) for k, v in part.items()} for part in (train.x, train.y, train.mask)]
        tf.function(trainer.strategy.step)(*batch)
        after[decay] = [v.numpy() for v in kernels]
    for start, plain, decayed in zip(before, after[0.0], after[0.3]):
        np.testing.assert_allclose(decayed - plain, -lr * 0.3 * start, atol=1e-6)


# -- history ------------------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.parametrize("name", ["si", "famo", "dbmtl", "pcgrad", "cagrad"])
def test_every_new_method_trains_and_keeps_its_history(name):
    encs = [TabularInput("features", {"numeric": ["x*"], "categorical": ["city"]})]
    tasks = [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]
    train, valid = prepared(encs, tasks, *split(make_table(400)))
    _, _, fit = train_once(encs, tasks, train, valid, {"weighting": name, "learning_rate": 0.01}, epochs=12)
    assert fit.metrics["kind"]["accuracy"] > 0.8 and fit.scores["price"] > 0.5
    for row in fit.history:
        assert np.isfinite([row["weight.price"], row["weight.kind"]]).all()
        if registry.member("weighting", name).per_task_gradients:
            assert -1 <= row["grad_cosine"] <= 1 and row["grad_cosine"] == row["grad_cosine.price.kind"]
            assert 0 <= row["conflict_share"] <= 1
        else:
            assert "grad_cosine" not in row


def test_max_records_the_share_of_steps_each_task_was_the_worst():
    w = method("max", ["a", "b"])
    for losses in ([1.0, 2.0], [3.0, 2.0], [1.0, 5.0], [0.5, 0.7]):
        w.combine(tf.constant(losses))
    record = w.epoch_record()
    assert (record["weight.a"], record["weight.b"]) == (0.25, 0.75)
    w.combine(tf.constant([2.0, 1.0]))
    assert w.epoch_record()["weight.a"] == 1.0  # the tallies start afresh each epoch
