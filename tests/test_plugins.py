"""Plugin discovery through entry points, including a third-party package outside the repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from automtl.core.plugins import list_plugins

from conftest import LEAN_ENDING

THIRD_PARTY = '''
"""A third-party task type: Poisson counts, written against automtl.api only."""
import keras
import numpy as np
from automtl.api import Options, Targets, Task, as_float, dense_block


class CountOptions(Options):
    target: str


class CountTask(Task):
    Options = CountOptions
    primary_metric = "mae"
    direction = "minimize"

    def targets(self, data):
        y = as_float(data, self.options.target, needed_by=f"task '{self.name}'")
        return Targets(y=np.nan_to_num(y).astype("float32"), mask=~np.isnan(y))

    def build_head(self, features, params):
        x = dense_block(features, params.units, params.depth, params.dropout, params.l2, name="hidden")
        return keras.layers.Dense(1, name="log_rate")(x)

    def loss(self, y_true, y_pred):
        log_rate = y_pred[:, 0]
        return keras.ops.exp(log_rate) - y_true * log_rate

    def evaluate(self, y_true, mask, y_pred):
        m = mask > 0
        return {"mae": float(np.abs(np.exp(y_pred[m, 0]) - y_true[m]).mean())}

    def score(self, metrics):
        return -metrics["mae"]

    def postprocess(self, raw):
        import tensorflow as tf
        return {"expected": tf.exp(raw[:, 0])}
'''


def make_distribution(root: Path) -> Path:
    """A package with a dist-info declaring an automtl.tasks entry point, as pip would install it."""
    from helpers import fake_distribution

    return fake_distribution(root, "automtl_counts", THIRD_PARTY, "1.2.3", "automtl.tasks",
                             "count = automtl_counts:CountTask")


def test_builtin_plugins_are_listed_with_distribution():
    rows = {(p.kind, p.name): p for p in list_plugins()}
    for key in [("task", "regression"), ("task", "classification"), ("input", "tabular"), ("input", "array")]:
        assert key in rows
        assert rows[key].distribution == "automtl"
        assert rows[key].version


@pytest.mark.e2e
def test_third_party_task_is_discovered_and_used_in_a_search(tmp_path, table_csv, tiny_space):
    site = make_distribution(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listed = subprocess.run([sys.executable, "-m", "automtl.cli", "plugins"], env=env,
                            capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "count" in listed.stdout and "automtl-counts" in listed.stdout and "1.2.3" in listed.stdout

    import pandas as pd
    import yaml

    frame = pd.read_csv(table_csv)
    frame["visits"] = (frame["x0"].abs() * 3).round().astype(int)
    frame.to_csv(table_csv, index=False)
    exp = {
        "name": "counts",
        "data": {"train": str(table_csv), "valid_fraction": 0.25},
        "inputs": [{"name": "features", "type": "tabular", "numeric": ["x*"]}],
        "tasks": [{"name": "visits", "type": "count", "target": "visits"},
                  {"name": "kind", "type": "classification", "target": "kind"}],
        "space": str(tiny_space),
        "search": {**LEAN_ENDING, "trials": 2, "epochs": 3, "out": str(tmp_path / "run")},
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    proc = subprocess.run([sys.executable, "-m", "automtl.cli", "search", "--config", str(path), "--quiet"],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((tmp_path / "run" / "best" / "automtl.json").read_text())
    tasks = {t["name"]: t for t in manifest["tasks"]}
    assert tasks["visits"]["type"] == "count"
    assert tasks["visits"]["outputs"] == ["visits.expected"]
    assert "visits.mae" in (tmp_path / "run" / "trials.csv").read_text().splitlines()[0]


@pytest.mark.e2e
def test_third_party_task_passes_the_contract_kit(tmp_path, monkeypatch):
    """What a plugin author runs in their own tests (README: Checking a plugin)."""
    import importlib

    from automtl.testing import check_task
    from conftest import make_table

    monkeypatch.syspath_prepend(str(make_distribution(tmp_path)))
    count_task = importlib.import_module("automtl_counts").CountTask
    frame = make_table(120)
    frame["visits"] = (frame["x0"].abs() * 3).round()
    frame.loc[:4, "visits"] = None
    check_task(count_task, {"target": "visits"}, frame, missing_rows=range(5),
               inputs=[{"name": "features", "type": "tabular", "numeric": ["x*"]}], folder=tmp_path / "contract")


THIRD_PARTY_WEIGHTING = '''
"""A third-party weighting method: the largest loss counts ``boost`` times, a gradient manipulation."""
from automtl.core.params import ParamSpec
from automtl.lazy import tf
from automtl.training.weighting import Weighting


class BoostWorst(Weighting):
    parameters = (ParamSpec("boost", 2.0, low=1, high=10, doc="weight of the worst task's gradient"),)
    per_task_gradients = True

    def task_objectives(self, losses):
        self.worst = tf.one_hot(tf.argmax(losses), self.T)
        return losses

    def combine_gradients(self, grads, gram):
        w = 1.0 + (float(self.value(self.params, "boost")) - 1.0) * self.worst
        self.note_weights(w)
        return tf.linalg.matvec(grads, w, transpose_a=True)
'''


@pytest.mark.e2e
def test_third_party_weighting_is_registered_validated_and_trained(tmp_path, monkeypatch):
    """A weighting method in its own package: one file plus one entry point; its parameter joins the spaces."""
    import numpy as np

    from automtl.core import registry
    from automtl.errors import ConfigError
    from automtl.space import parse_space
    from automtl_classification import ClassificationTask
    from automtl_regression import RegressionTask
    from automtl_tabular import TabularInput
    from conftest import make_table
    from helpers import fake_distribution, prepared, split, train_once

    site = fake_distribution(tmp_path, "automtl_boost", THIRD_PARTY_WEIGHTING, "0.1", "automtl.weightings",
                             "boost = automtl_boost:BoostWorst")
    monkeypatch.syspath_prepend(str(site))
    registry.refresh()
    try:
        assert "boost" in registry.names("weighting")
        space = parse_space({"parameters": {"weighting": {"choice": ["static", "boost"]},
                                            "boost": {"float": [1.5, 4.0], "when": {"weighting": "boost"}}}},
                            "s.yaml", ["a"])
        assert space.names() == ["weighting", "boost"]
        with pytest.raises(ConfigError, match="s.yaml: boost: 20.0 is out of range"):
            parse_space({"parameters": {"boost": {"float": [1.5, 20.0]}}}, "s.yaml", ["a"])
        encs = [TabularInput("features", {"numeric": ["x*"], "categorical": ["city"]})]
        tasks = [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]
        train, valid = prepared(encs, tasks, *split(make_table(200)))
        _, _, fit = train_once(encs, tasks, train, valid, {"weighting": "boost", "boost": 3.0, "learning_rate": 0.01},
                               epochs=3)
        row = fit.history[-1]
        assert 1.0 <= row["weight.price"] <= 3.0 and row["weight.price"] + row["weight.kind"] > 2.0
        assert np.isfinite(row["grad_cosine"])
    finally:
        monkeypatch.undo()
        registry.refresh()
    assert "boost" not in registry.names("weighting")
