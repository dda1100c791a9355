"""Training options: lr schedules, AdamW weight decay, label smoothing and norm, in joint and alternating training."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from automtl.training.schedules import lr_factor
from helpers import assert_user_error, prepared, split, table_from, train_once
from conftest import make_table


def test_constant_schedule_keeps_the_rate():
    assert [lr_factor("constant", e, 10) for e in range(10)] == [1.0] * 10


def test_cosine_warms_up_then_decays_to_near_zero():
    f = [lr_factor("cosine", e, 40) for e in range(40)]
    assert f[0] < f[1] < 1.0  # warm-up over the first 5% of epochs (2 of 40)
    assert max(f) == pytest.approx(1.0) and int(np.argmax(f)) == 2
    assert all(a >= b for a, b in zip(f[2:], f[3:]))  # then monotone decay
    assert f[-1] < 0.01
    assert f[21] == pytest.approx(0.5, abs=0.05)  # half-way through the decay: half the rate


def test_onecycle_rises_to_peak_at_30_percent_then_anneals_far_below_start():
    f = [lr_factor("onecycle", e, 20) for e in range(20)]
    assert f[0] == pytest.approx(1 / 25)
    assert int(np.argmax(f)) == 6 and f[6] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:6], f[1:7])) and all(a >= b for a, b in zip(f[6:], f[7:]))
    assert f[-1] == pytest.approx(1 / 25 / 1e4)


def _data():
    train, valid = split(make_table(240))
    from automtl_classification import ClassificationTask
    from automtl_regression import RegressionTask
    from automtl_tabular import TabularInput

    encoders = [TabularInput("features", {"numeric": ["x*"], "categorical": ["city"]})]
    tasks = [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]
    tr, va = prepared(encoders, tasks, train, valid)
    return encoders, tasks, tr, va


@pytest.mark.parametrize("strategy", ["joint", "alternating"])
@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_trainer_sets_every_optimizer_rate_per_epoch(strategy, schedule):
    encoders, tasks, tr, va = _data()
    params = {"strategy": strategy, "lr_schedule": schedule, "learning_rate": 4e-3, "trunk.units": 16,
              "trunk.depth": 1, "batch_size": 32}
    _, trainer, _ = train_once(encoders, tasks, tr, va, params, epochs=2)
    for epoch in range(10):
        trainer.set_learning_rates(epoch, 10)
        for opt in trainer.strategy.optimizers:
            assert float(opt.learning_rate.numpy()) == pytest.approx(4e-3 * lr_factor(schedule, epoch, 10), rel=1e-5)


@pytest.mark.parametrize("strategy", ["joint", "alternating"])
def test_weight_decay_shrinks_kernels_not_biases(strategy):
    """Same seed and data with and without AdamW decay: decayed kernels end far smaller, biases alike."""
    encoders, tasks, tr, va = _data()
    import keras

    from automtl.core.trial_params import TrialParams
    from automtl.model.assemble import build_model
    from automtl.training.trainer import Trainer

    final = {}
    for decay in (0.0, 5.0):
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        p = TrialParams({"strategy": strategy, "weight_decay": decay, "learning_rate": 1e-2, "trunk.units": 16,
                         "trunk.depth": 1, "head.depth": 0, "batch_size": 32})
        assembled = build_model(encoders, tasks, p)
        Trainer(assembled, tasks, p, tr, va, {t.name: 1.0 for t in tasks}).fit(3, patience=None)
        final[decay] = [np.array(w) for w in assembled.model.get_layer("trunk_dense0").get_weights()]
    (k0, b0), (k1, b1) = final[0.0], final[5.0]
    assert np.linalg.norm(k1) < 0.7 * np.linalg.norm(k0)
    assert np.linalg.norm(b1) > 0.5 * np.linalg.norm(b0)


def test_label_smoothing_from_option_and_per_trial_parameter():
    import keras

    from automtl.core.trial_params import TrialParams
    from automtl_classification import ClassificationTask

    frame = make_table(60)
    frame["three"] = np.array(["a", "b", "c"])[np.arange(60) % 3]
    table = table_from(frame)
    for target, logits, label in (("kind", [[4.0]], [[1.0]]), ("three", [[4.0, 0.0, 0.0]], [0])):
        task = ClassificationTask("t", {"target": target, "label_smoothing": 0.1})
        task.prepare(table)
        y, z = np.array(label, np.float32 if target == "kind" else np.int32), keras.ops.convert_to_tensor(logits)
        with_option = float(task.loss(y, z)[0])
        task.configure(TrialParams({"label_smoothing": 0.0}))
        plain = float(task.loss(y, z)[0])
        task.configure(TrialParams({"label_smoothing.t": 0.3}))
        strong = float(task.loss(y, z)[0])
        assert plain < with_option < strong  # a confident right answer costs more the more is smoothed


@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("strategy", ["joint", "alternating"])
def test_norm_in_dense_blocks_trains(norm, strategy):
    encoders, tasks, tr, va = _data()
    params = {"norm": norm, "strategy": strategy, "trunk.units": 16, "trunk.depth": 2, "learning_rate": 1e-2,
              "batch_size": 16}
    assembled, _, fit = train_once(encoders, tasks, tr, va, params, epochs=8)
    kinds = {type(l).__name__ for l in assembled.model.layers}
    kinds |= {type(l).__name__ for h in assembled.heads.values() for l in h.layers}
    assert ("BatchNormalization" if norm == "batch" else "LayerNormalization") in kinds
    assert np.isfinite(fit.objective) and fit.scores["kind"] > 0.7, fit.scores


BAD_VALUES = [
    ("parameters", "lr_schedule", {"choice": ["cosine", "linear"]}, "linear"),
    ("parameters", "weight_decay", {"float": [-0.1, 0.1]}, "out of range"),
    ("parameters", "norm", "group", "group"),
    ("parameters", "label_smoothing", 1.0, "out of range"),
    ("per_task", "label_smoothing", {"float": [0.0, 1.5]}, "out of range"),
    ("parameters", "tabular.numeric", {"choice": ["standard", "log"]}, "log"),
    ("parameters", "tabular.categorical", "hashing", "hashing"),
    ("parameters", "tabular.numeric_bins", {"int": [1, 16]}, "out of range"),
    ("parameters", "tabular.numeric_bins", 7.5, "whole number"),
    ("parameters", "tabular.embedding_dim", {"choice": [0, 8]}, "out of range"),
    ("parameters", "tabular.periodic_sigma", {"float": [0.0, 1.0]}, "out of range"),
]


@pytest.mark.parametrize("section, key, value, fragment", BAD_VALUES, ids=[f"{k}={v}" for _, k, v, _ in BAD_VALUES])
def test_bad_values_of_new_parameters_are_refused_before_any_trial(cli, tmp_path, write_experiment, section, key,
                                                                  value, fragment):
    space = tmp_path / "bad_space.yaml"
    space.write_text(yaml.safe_dump({"parameters": {"trunk.units": 8}, section: {key: value}}))
    path = write_experiment(space=str(space))
    result = cli("search", "--config", path)
    assert_user_error(result, "bad_space.yaml", key.split(".")[0], fragment)
    assert not (tmp_path / "run" / "trials.csv").exists()


@pytest.mark.parametrize("where, option, value", [
    ("inputs", "numeric_encoding", "log"), ("inputs", "categorical_encoding", "hashing"),
    ("inputs", "numeric_bins", 1), ("inputs", "embedding_dim", 0), ("inputs", "min_count", 0),
    ("tasks", "label_smoothing", 1.0),
])
def test_bad_new_options_name_the_plugin_and_option(cli, write_experiment, where, option, value):
    exp = yaml.safe_load(write_experiment().read_text())
    exp[where][-1][option] = value
    path = write_experiment(**{where: exp[where]})
    assert_user_error(cli("search", "--config", path), "input 'features'" if where == "inputs" else "task 'kind'",
                      option)


@pytest.mark.e2e
@pytest.mark.parametrize("backend, algorithm", [("keras-tuner", "random"), ("optuna", "random")])
def test_new_parameters_search_under_both_backends(cli, tmp_path, write_experiment, backend, algorithm):
    space = tmp_path / "opts.yaml"
    space.write_text(yaml.safe_dump({
        "parameters": {"trunk.units": 16, "strategy": {"choice": ["joint", "alternating"]},
                       "lr_schedule": {"choice": ["cosine", "onecycle"]}, "weight_decay": {"float": [1e-4, 1e-2], "log": True},
                       "norm": {"choice": ["batch", "layer"]}, "label_smoothing": {"float": [0.0, 0.2]},
                       "tabular.numeric": {"choice": ["quantile", "ple", "periodic"]},
                       "tabular.numeric_bins": {"int": [4, 8]}, "tabular.categorical": {"choice": ["one_hot", "embedding"]},
                       "batch_size": 32}}))
    path = write_experiment(space=str(space))
    result = cli("search", "--config", path, "--backend", backend, "--algorithm", algorithm, "--trials", "2",
                 "--epochs", "2", "--out", tmp_path / backend)
    assert result.exit_code == 0, result.output
    import csv

    rows = list(csv.DictReader(open(tmp_path / backend / "trials.csv")))
    assert [r["state"] for r in rows] == ["complete", "complete"]
    for r in rows:
        assert r["param.lr_schedule"] in ("cosine", "onecycle") and r["param.tabular.numeric"] in ("quantile", "ple", "periodic")
        assert 1e-4 <= float(r["param.weight_decay"]) <= 1e-2
