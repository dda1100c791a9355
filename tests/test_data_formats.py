"""Parquet and NPZ data, a separate validation file, and the demo's experiment file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from conftest import LEAN_ENDING, make_table


@pytest.mark.e2e
def test_parquet_with_separate_validation_file(cli, tmp_path, tiny_space):
    frame = make_table(300)
    frame.iloc[:220].to_parquet(tmp_path / "train.parquet")
    frame.iloc[220:].to_parquet(tmp_path / "valid.parquet")
    exp = {
        "data": {"train": "train.parquet", "valid": "valid.parquet"},
        "inputs": [{"name": "features", "type": "tabular", "numeric": ["x*"], "categorical": ["city"]}],
        "tasks": [{"name": "price", "type": "regression", "target": "price"},
                  {"name": "kind", "type": "classification", "target": "kind"}],
        "space": str(tiny_space),
        "search": {**LEAN_ENDING, "trials": 1, "epochs": 2, "out": "run", "trials_per_process": 0},
    }
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    result = cli("search", "--config", tmp_path / "exp.yaml", "--no-report")
    assert result.exit_code == 0, result.output
    assert "220 training / 80 validation rows" in result.output.replace("\n", " ")
    manifest = json.loads((tmp_path / "run" / "best" / "automtl.json").read_text())
    assert manifest["data"]["valid"].endswith("valid.parquet")


@pytest.mark.e2e
def test_npz_arrays_as_inputs_and_targets(cli, tmp_path, tiny_space):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(240, 4, 4)).astype(np.float32)
    score = images[:, 0, 0] * 2 + images[:, 1, 1]
    label = (images[:, 2, 2] > 0).astype(np.int64)
    two = np.stack([score, -score], axis=1)
    np.savez(tmp_path / "data.npz", images=images, score=score, label=label, two=two)
    exp = {
        "data": {"train": "data.npz", "valid_fraction": 0.25},
        "inputs": [{"name": "images", "type": "array", "array": "images"}],
        "tasks": [{"name": "score", "type": "regression", "target": "two"},
                  {"name": "label", "type": "classification", "target": "label"}],
        "space": str(tiny_space),
        "search": {**LEAN_ENDING, "trials": 1, "epochs": 3, "out": "run", "trials_per_process": 0},
    }
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    result = cli("search", "--config", tmp_path / "exp.yaml", "--no-report")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "best" / "automtl.json").read_text())
    assert manifest["inputs"][0]["shape"] == [None, 4, 4]
    tasks = {t["name"]: t for t in manifest["tasks"]}
    assert tasks["label"]["mode"] == "binary" and tasks["label"]["classes"] == [0, 1]

    import tensorflow as tf

    serve = tf.saved_model.load(str(tmp_path / "run" / "best" / "saved_model")).signatures["serving_default"]
    out = serve(images=tf.constant(images[:5]))
    assert out["score.value"].shape == (5, 2)
    assert out["label.class_id"].shape == (5,)


def test_demo_writes_an_ordinary_experiment_file(tmp_path):
    from automtl.config import load_experiment
    from automtl.core.plugins import write_demo

    path = write_demo("digits", tmp_path)
    exp = load_experiment(path)
    assert [t.type for t in exp.tasks] == ["classification", "regression"]
    assert (tmp_path / "digits.csv").exists()
