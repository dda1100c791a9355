"""Classification (binary, multi-class, multi-label; string or integer labels) and regression."""

from __future__ import annotations

import numpy as np
import pytest

from automtl.data.table import Table
from automtl.errors import DataError
from automtl_classification import ClassificationTask
from automtl_regression import RegressionTask


def table(**cols) -> Table:
    return Table("t.csv", {k: np.array(v, dtype=object if any(isinstance(x, str) or x is None for x in v) else None)
                           for k, v in cols.items()})


def test_binary_string_labels():
    task = ClassificationTask("spam", {"target": "label"})
    data = table(label=["spam", "ham", "spam", None, "ham"])
    task.prepare(data)
    assert task.binary and task.classes == ["ham", "spam"]
    t = task.targets(data)
    assert t.y[:, 0].tolist() == [1, 0, 1, 0, 0] and t.mask.tolist() == [1, 1, 1, 0, 1]
    metrics = task.evaluate(t.y, t.mask, np.array([[5.0], [-5.0], [-5.0], [0.0], [-5.0]]))
    assert metrics["accuracy"] == pytest.approx(0.75) and metrics["labelled"] == 4


def test_multiclass_integer_labels_and_unseen_label_is_masked():
    task = ClassificationTask("digit", {"target": "d"})
    task.prepare(table(d=[3, 1, 2, 1]))
    assert task.classes == [1, 2, 3] and not task.binary
    t = task.targets(table(d=[2, 3, 9]))
    assert t.y.tolist()[:2] == [1, 2] and t.mask.tolist() == [1, 1, 0]


def test_multilabel_from_separated_strings_and_from_columns():
    task = ClassificationTask("tags", {"target": "tags", "multilabel": True})
    data = table(tags=["a|b", "b", "", "c|a"])
    task.prepare(data)
    assert task.classes == ["a", "b", "c"]
    t = task.targets(data)
    assert t.y.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]]
    assert t.mask.tolist() == [1, 1, 0, 1]
    metrics = task.evaluate(t.y, t.mask, np.where(t.y > 0, 4.0, -4.0))
    assert metrics["f1_micro"] == pytest.approx(1.0)

    cols = ClassificationTask("flags", {"target": ["red", "big"]})
    data = Table("t.csv", {"red": np.array([1.0, 0.0, np.nan]), "big": np.array([0.0, 1.0, 1.0])})
    cols.prepare(data)
    t = cols.targets(data)
    assert cols.classes == ["red", "big"] and t.mask.tolist() == [1, 1, 0]


def test_single_class_is_refused():
    with pytest.raises(DataError, match="at least two classes"):
        ClassificationTask("c", {"target": "y"}).prepare(table(y=["a", "a"]))


def test_regression_several_targets_in_original_scale():
    task = RegressionTask("size", {"target": ["h", "w"]})
    data = Table("t.csv", {"h": np.array([100.0, 200.0, np.nan, 300.0]), "w": np.array([1.0, 2.0, 3.0, 4.0])})
    task.prepare(data)
    t = task.targets(data)
    assert t.y.shape == (4, 2) and t.mask[:, 0].tolist() == [1, 1, 0, 1]
    perfect = task.evaluate(t.y, t.mask, t.y.astype(np.float64))
    assert perfect["rmse"] == pytest.approx(0.0, abs=1e-6)
    off = task.evaluate(t.y, t.mask, t.y + 1.0)  # one std off in each column
    assert off["rmse"] == pytest.approx(float(np.mean(task.std)), rel=1e-6)

    import tensorflow as tf

    value = task.postprocess(tf.constant(t.y))["value"].numpy()
    np.testing.assert_allclose(value[[0, 1, 3], 0], [100, 200, 300], rtol=1e-5)
    np.testing.assert_allclose(value[:, 1], [1, 2, 3, 4], rtol=1e-5)


def test_regression_rejects_text_and_names_the_row():
    task = RegressionTask("price", {"target": "p"})
    with pytest.raises(DataError, match=r"t.csv: column 'p' .* must be numeric, but row 3 holds 'cheap'"):
        task.prepare(table(p=["1.5", "2", "cheap"]))


def test_a_column_constant_in_training_does_not_blow_up_at_serving():
    """A pixel blank in every training row, inked in a new row, must not send the output to thousands."""
    from automtl_tabular import ArrayInput, TabularInput

    train = table(a=[0.0, 0.0, 0.0], b=[1.0, 2.0, 3.0])
    enc = TabularInput("f", {"numeric": ["a", "b"]})
    enc.prepare(train)
    assert enc.variance.tolist() == [1.0, pytest.approx(2 / 3)]
    arr = ArrayInput("p", {"array": "px"})
    arr.prepare(Table("x.npz", {"px": np.array([[0.0, 1.0], [0.0, 3.0]])}))
    assert arr.variance.tolist() == [1.0, 1.0]
