"""Tabular encodings: fitted on training rows only, searched per trial, serving raw values."""

from __future__ import annotations

import numpy as np
import pytest

from automtl_classification import ClassificationTask
from automtl_regression import RegressionTask
from automtl_tabular import TabularInput
from conftest import make_table
from helpers import prepared, split, table_from, train_once

ENCODINGS = [("robust", "one_hot"), ("quantile", "embedding"), ("ple", "one_hot"), ("periodic", "embedding")]


def frame_with_gaps(n: int = 300, seed: int = 0):
    frame = make_table(n, seed)
    rng = np.random.default_rng(seed + 1)
    frame.loc[rng.random(n) < 0.15, "x1"] = np.nan  # x1 has gaps in training; x0 has none
    frame.loc[:4, "city"] = "atlantis"  # a rare category (5 rows < min_count 6)
    return frame


def plugins(**options):
    enc = TabularInput("features", {"numeric": ["x*"], "categorical": ["city"], "min_count": 6, **options})
    return [enc], [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]


def fitted_weights(model) -> dict[str, list[np.ndarray]]:
    names = ("features_quantile", "features_ple", "features_norm", "features_robust", "features_missing", "city_lookup")
    return {l.name: [np.array(w) for w in l.get_weights()] for l in model.layers if l.name in names}


def test_encoders_fit_on_training_rows_only():
    frame = frame_with_gaps()
    train, valid = split(frame)
    other = frame.copy()
    other[["x0", "x1", "x2", "x3"]] = other[["x0", "x1", "x2", "x3"]] * 100 + 7  # very different validation rows
    _, valid_other = split(other)
    import keras

    from automtl.core.trial_params import TrialParams
    from automtl.model.assemble import build_model

    built = {}
    for label, v in (("a", valid), ("b", valid_other)):
        encoders, tasks = plugins()
        prepared(encoders, tasks, train, v)
        enc = encoders[0]
        assert "atlantis" not in enc.vocab["city"] and set(enc.vocab["city"]) == {"north", "south", "east"}
        assert enc.missing_columns == [1]
        for numeric in ("quantile", "ple", "standard", "robust"):
            keras.backend.clear_session()
            model = build_model(encoders, tasks, TrialParams({"tabular.numeric": numeric})).model
            built[(label, numeric)] = fitted_weights(model)
    for numeric in ("quantile", "ple", "standard", "robust"):
        a, b = built[("a", numeric)], built[("b", numeric)]
        assert a.keys() == b.keys() and a
        for name in a:
            for wa, wb in zip(a[name], b[name]):
                np.testing.assert_array_equal(wa, wb)


@pytest.mark.e2e
@pytest.mark.parametrize("numeric, categorical", ENCODINGS)
def test_each_encoding_trains_and_serves_raw_values(tmp_path, numeric, categorical):
    import tensorflow as tf

    from automtl.core.trial import TrialRecord
    from automtl.export.savedmodel import export_trial

    frame = frame_with_gaps()
    train, valid = split(frame)
    encoders, tasks = plugins()
    tr, va = prepared(encoders, tasks, train, valid)
    params = {"tabular.numeric": numeric, "tabular.categorical": categorical, "tabular.numeric_bins": 8,
              "tabular.embedding_dim": 4, "trunk.units": 32, "trunk.depth": 1, "learning_rate": 5e-3}
    assembled, _, fit = train_once(encoders, tasks, tr, va, params, epochs=8)
    assert fit.scores["kind"] > 0.6 and fit.scores["price"] > 0.2, fit.scores
    model_path = tmp_path / "model.keras"
    assembled.model.save(model_path)
    record = TrialRecord(number=0, state="complete", params=params, score=fit.objective, metrics={}, duration_s=1.0)
    out = export_trial(model_path, encoders, tasks, record, tmp_path / "export")
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    raw = {"features": tf.constant([[0.1, np.nan, -0.3, 2.0], [np.nan, np.nan, np.nan, np.nan]], tf.float32),
           "city": tf.constant(["north", "never-seen"])}
    result = serve(**raw)
    assert np.all(np.isfinite(result["price.value"].numpy()))
    assert set(result["kind.label"].numpy().astype(str)) <= {"basic", "premium"}


def test_ple_edges_follow_training_quantiles():
    frame = frame_with_gaps()
    frame["x3"] = np.where(frame["x3"] > 0, 1.0, 0.0)  # two distinct values: one real bin
    train, valid = split(frame)
    encoders, tasks = plugins()
    prepared(encoders, tasks, train, valid)
    edges = encoders[0].bin_edges(4)
    assert edges.shape == (4, 5)
    x0 = table_from(frame).column("x0", needed_by="t")
    assert edges[0, 0] >= np.nanmin(x0) and edges[0, -1] <= np.nanmax(x0)
    assert np.all(np.diff(edges, axis=1) >= 0)
    assert np.count_nonzero(np.diff(edges[3])) == 1


def test_robust_encoding_centres_on_the_median_and_clips_outliers_smoothly():
    frame = frame_with_gaps()
    frame.loc[10, "x0"] = 1e6  # one huge outlier in training moves neither the centre nor the scale much
    train, valid = split(frame)
    encoders, tasks = plugins()
    prepared(encoders, tasks, train, valid)
    import keras

    from automtl.core.trial_params import TrialParams
    from automtl.model.assemble import build_model

    enc = encoders[0]
    x0 = train.column("x0", needed_by="t").astype(float)
    center, scale = enc.robust_scaling()
    assert abs(center[0] - np.nanmedian(x0)) < 0.05 and 0.5 < scale[0] < 5  # the IQR, not the outlier's std
    keras.backend.clear_session()
    model = build_model(encoders, tasks, TrialParams({"tabular.numeric": "robust"})).model
    clip = keras.Model(model.inputs, model.get_layer("features_clip").output)
    raw = np.array([[center[0], 0, 0, 0], [1e9, 0, 0, 0], [center[0] + scale[0], 0, 0, 0]], np.float32)
    cities = np.array(["north"] * 3, dtype=object)
    out = np.asarray(clip({"features": raw, "city": cities}))
    assert abs(out[0, 0]) < 1e-6 and 2.9 < out[1, 0] <= 3.0  # the median -> 0; an outlier -> just under 3
    assert abs(out[2, 0] - 1 / np.sqrt(1 + 1 / 9)) < 1e-4  # one IQR above -> x / sqrt(1 + (x/3)^2) at x = 1
