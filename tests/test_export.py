"""The exported SavedModel serves in a fresh process with plain TensorFlow, matching the model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from automtl.core.trial import TrialRecord
from automtl_classification import ClassificationTask
from automtl_regression import RegressionTask
from automtl_tabular import TabularInput
from conftest import make_table
from helpers import prepared, split, train_once

SERVE = textwrap.dedent('''
    import json, sys
    import numpy as np
    import tensorflow as tf
    assert "automtl" not in sys.modules
    folder, data, out = sys.argv[1:4]
    fn = tf.saved_model.load(folder + "/saved_model").signatures["serving_default"]
    arrays = dict(np.load(data, allow_pickle=True))
    feed = {k: tf.constant(v.astype(str) if v.dtype == object else v) for k, v in arrays.items()}
    result = fn(**feed)
    np.savez(out, **{k: v.numpy() for k, v in result.items()})
    assert not [m for m in sys.modules if m.startswith("automtl")]
''')


@pytest.mark.e2e
def test_saved_model_round_trip_in_fresh_process(tmp_path):
    frame = make_table(300)
    frame["price2"] = frame["price"] * -3 + 1000  # a second target, different scale
    frame.loc[::7, "x1"] = np.nan                 # missing inputs are imputed in the graph
    encs = [TabularInput("features", {"numeric": ["x*"], "categorical": ["city"]})]
    tasks = [RegressionTask("price", {"target": ["price", "price2"]}), ClassificationTask("kind", {"target": "kind"})]
    train, valid = prepared(encs, tasks, *split(frame))
    assembled, trainer, fit = train_once(encs, tasks, train, valid, {"strategy": "joint"}, epochs=5)
    model_path = tmp_path / "model.keras"
    assembled.model.save(model_path)

    from automtl.export.savedmodel import export_trial

    record = TrialRecord(3, "complete", fit.objective, {"strategy": "joint"}, {"price.rmse": 1.0}, 1.0, "cpu")
    out = export_trial(model_path, encs, tasks, record, tmp_path / "best")
    np.savez(tmp_path / "in.npz", **valid.x)
    subprocess.run([sys.executable, "-c", SERVE, str(out), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                   check=True, cwd=tmp_path)
    served = dict(np.load(tmp_path / "out.npz", allow_pickle=True))

    raw = trainer.predict({k: v for k, v in trainer._valid_x.items()}, len(valid))
    expected_value = raw["price"] * tasks[0].std + tasks[0].mean  # original scale
    np.testing.assert_allclose(served["price.value"], expected_value, rtol=1e-4, atol=1e-3)
    assert abs(served["price.value"][:, 1].mean() - valid_target_mean(frame)) < 0.2 * abs(valid_target_mean(frame))
    probs = served["kind.probabilities"]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert set(served["kind.label"].astype(str)) <= {"basic", "premium"}
    np.testing.assert_array_equal(served["kind.class_id"], probs.argmax(axis=1))

    manifest = json.loads((out / "automtl.json").read_text())
    first = manifest["inputs"][0]
    assert (first["name"], first["dtype"], first["shape"]) == ("features", "float32", [None, 4])
    assert first["columns"] == ["x0", "x1", "x2", "x3"]
    assert manifest["inputs"][1]["dtype"] == "string" and manifest["inputs"][1]["shape"] == [None]
    assert manifest["trial"]["number"] == 3
    assert {t["name"]: t["outputs"] for t in manifest["tasks"]} == {
        "price": ["price.value"], "kind": ["kind.class_id", "kind.label", "kind.probabilities"]}


def valid_target_mean(frame) -> float:
    return float(frame["price2"].mean())


def test_failed_export_leaves_previous_export_intact(tmp_path):
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "automtl.json").write_text("{}")
    from automtl.export.savedmodel import export_trial

    with pytest.raises(Exception):
        export_trial(tmp_path / "missing.keras", [], [], TrialRecord(0, "complete", 1.0, {}, {}, 1.0), tmp_path / "best")
    assert (tmp_path / "best" / "automtl.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["best"]
