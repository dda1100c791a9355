"""Metrics chosen per task (``metric:``), class weights, and the chance-level reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from automtl.config import build_experiment
from automtl.data.prepare import instantiate, prepare
from automtl.errors import ConfigError, DataError
from automtl.rundir import chance
from automtl.run.chance import chance_reference
from automtl.core.trial import TrialRecord
from automtl_classification import ClassificationTask
from automtl_regression import RegressionTask
from helpers import table_from
from test_task_plugins import table


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_multiclass_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.choice(["a", "b", "c"], size=200, p=[0.7, 0.2, 0.1])
    task = ClassificationTask("k", {"target": "k"})
    data = table(k=labels.tolist())
    task.prepare(data)
    t = task.targets(data)
    raw = rng.normal(size=(200, 3)) + 1.5 * np.eye(3)[t.y]  # informative, imperfect
    ms = task.evaluate(t.y, t.mask, raw)
    probs = _softmax(raw)
    assert ms["accuracy"] == pytest.approx(skm.accuracy_score(t.y, probs.argmax(1)))
    assert ms["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(t.y, probs.argmax(1)))
    assert ms["f1_macro"] == pytest.approx(skm.f1_score(t.y, probs.argmax(1), average="macro"))
    assert ms["log_loss"] == pytest.approx(skm.log_loss(t.y, probs))
    assert ms["auc"] == pytest.approx(skm.roc_auc_score(t.y, probs, multi_class="ovr", average="macro"))


def test_binary_auc_and_balanced_accuracy_agree_with_scikit_learn():
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.2).astype(int)
    task = ClassificationTask("b", {"target": "b"})
    data = table(b=y.tolist())
    task.prepare(data)
    t = task.targets(data)
    raw = (rng.normal(size=300) + 1.2 * y - 1.0)[:, None]
    ms = task.evaluate(t.y, t.mask, raw)
    p1 = 1 / (1 + np.exp(-raw[:, 0]))
    assert ms["auc"] == pytest.approx(skm.roc_auc_score(y, p1))
    assert ms["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, p1 > 0.5))


def test_regression_r2_and_mae_agree_with_scikit_learn():
    rng = np.random.default_rng(2)
    truth = rng.normal(10, 3, size=100)
    task = RegressionTask("v", {"target": "v"})
    data = table(v=truth.tolist())
    task.prepare(data)
    t = task.targets(data)
    guess = truth + rng.normal(size=100)
    ms = task.evaluate(t.y, t.mask, ((guess - task.mean) / task.std)[:, None])
    assert ms["r2"] == pytest.approx(skm.r2_score(truth, guess))
    assert ms["mae"] == pytest.approx(skm.mean_absolute_error(truth, guess))


def _experiment(tmp_path: Path, frame, **task) -> object:
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    raw = {"name": "m", "data": {"train": str(path), "valid_fraction": 0.25},
           "inputs": [{"name": "f", "type": "tabular", "numeric": ["x*"]}],
           "tasks": [{"name": "health", "type": "classification", "target": "y", **task}]}
    return build_experiment(raw, "exp.yaml", tmp_path)


def _dominant(n: int = 400, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = np.where(rng.random(n) < 0.8, "good", np.where(x[:, 0] > 0, "average", "poor"))
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "y": y})


def test_metric_key_picks_what_ranks_the_task(tmp_path):
    _, (task,) = instantiate(_experiment(tmp_path, _dominant(), metric="log_loss"))
    assert (task.primary_metric, task.direction) == ("log_loss", "minimize")
    _, (task,) = instantiate(_experiment(tmp_path, _dominant()))
    assert (task.primary_metric, task.direction) == ("accuracy", "maximize")  # the default is unchanged


def test_unknown_metric_is_refused_naming_the_task_and_the_choices(tmp_path):
    with pytest.raises(ConfigError) as err:
        instantiate(_experiment(tmp_path, _dominant(), metric="rmse"))
    assert "tasks.health.metric" in str(err.value) and "balanced_accuracy" in str(err.value)


def test_log_loss_is_scored_as_skill_over_class_frequencies(tmp_path):
    exp = _experiment(tmp_path, _dominant(), metric="log_loss")
    prepared = prepare(exp, *instantiate(exp))
    task = prepared.tasks[0]
    train_y, train_m = prepared.train.y["health"], prepared.train.mask["health"]
    constant = np.tile(task.chance_output(), (len(train_y), 1))
    assert task.score(task.evaluate(train_y, train_m, constant)) == pytest.approx(0.0, abs=1e-9)
    perfect = 30.0 * np.eye(3)[train_y]
    assert task.score(task.evaluate(train_y, train_m, perfect)) == pytest.approx(1.0, abs=1e-6)


def test_chance_reference_is_the_majority_class_on_the_validation_rows(tmp_path):
    exp = _experiment(tmp_path, _dominant())
    prepared = prepare(exp, *instantiate(exp))
    ref = chance_reference(prepared)["health"]
    valid_y = prepared.valid.y["health"]
    assert ref["metric"] == "accuracy"
    assert ref["value"] == pytest.approx(np.mean(valid_y == prepared.tasks[0].classes.index("good")))
    freq = prepared.tasks[0].frequencies
    assert ref["metrics"]["log_loss"] == pytest.approx(-np.log(freq[valid_y]).mean())


def test_chance_reference_of_a_cross_validated_regression_is_the_training_mean(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x0": rng.normal(size=200), "v": rng.normal(5, 2, size=200)})
    path = tmp_path / "r.csv"
    frame.to_csv(path, index=False)
    exp = build_experiment({"name": "r", "data": {"train": str(path), "folds": 4},
                            "inputs": [{"name": "f", "type": "tabular", "numeric": ["x0"]}],
                            "tasks": [{"name": "v", "type": "regression", "target": "v", "metric": "r2"}]},
                           "exp.yaml", tmp_path)
    ref = chance_reference(prepare(exp, *instantiate(exp)))["v"]
    assert ref["metric"] == "r2" and -0.2 < ref["value"] <= 0.0  # the mean of other rows: a little under 0
    assert ref["score"] == pytest.approx(ref["value"])


def test_shortfall_warning_when_the_best_trial_does_not_beat_chance():
    tasks = [{"name": "health", "direction": "maximize",
              "reference": {"metric": "accuracy", "value": 0.796, "label": "the class frequencies"}},
             {"name": "price", "direction": "minimize", "reference": {"metric": "rmse", "value": 10.0, "label": "m"}}]
    best = TrialRecord(number=3, state="complete", score=0.5, params={}, duration_s=1.0, metrics={"health.accuracy": 0.788, "price.rmse": 4.0})
    warnings = chance.shortfalls(tasks, best)
    assert len(warnings) == 1 and "task 'health'" in warnings[0] and "0.788 vs 0.796" in warnings[0]
    assert chance.header(tasks) == "chance level: health.accuracy 0.796, price.rmse 10"
    best.metrics["health.accuracy"] = 0.81
    assert chance.shortfalls(tasks, best) == []


def test_balanced_class_weights_scale_each_rows_loss():
    task = ClassificationTask("k", {"target": "k", "class_weight": "balanced"})
    data = table(k=["a"] * 6 + ["b"] * 2)
    task.prepare(data)
    assert task.class_weights.tolist() == pytest.approx([8 / (2 * 6), 8 / (2 * 2)])
    plain = ClassificationTask("k", {"target": "k"})
    plain.prepare(data)
    t = task.targets(data)
    logits = np.zeros((8, 1), np.float32)
    ratio = np.asarray(task.loss(t.y, logits)) / np.asarray(plain.loss(t.y, logits))
    assert ratio.tolist() == pytest.approx([8 / 12] * 6 + [2.0] * 2, rel=1e-5)


def test_class_weight_mapping_names_known_classes():
    task = ClassificationTask("k", {"target": "k", "class_weight": {"b": 3.0}})
    task.prepare(table(k=["a", "b", "c"]))
    assert task.class_weights.tolist() == [1.0, 3.0, 1.0]
    wrong = ClassificationTask("k", {"target": "k", "class_weight": {"z": 3.0}})
    with pytest.raises(DataError, match="class_weight.*'z'"):
        wrong.prepare(table(k=["a", "b", "c"]))
    with pytest.raises(ConfigError, match="single-label"):
        ClassificationTask("k", {"target": "k", "multilabel": True, "class_weight": "balanced"})
