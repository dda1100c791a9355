"""Every installed built-in task and input type keeps the plugin contract (automtl.testing).

Parametrised over the installed entry points: a new built-in type without a
case here fails, so each one is checked the way a third party checks theirs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from automtl.core.plugins import entry_points
from automtl.data.readers import read_table
from automtl.testing import check_input, check_task
from conftest import make_table

BUILT_IN = "automtl"


def _frame_with_missing(column: str, rows: int = 10):
    frame = make_table(120)
    frame.loc[: rows - 1, column] = None
    return frame


def _tagging_rows(tmp_path: Path) -> Path:
    """24 short requests with slot tags; four carry no tags (tagging labels missing there)."""
    import json

    cities = ["boston", "new york", "paris", "rio de janeiro", "oslo", "tokyo"]
    lines = []
    for i in range(60):
        city = cities[i % len(cities)].split()
        lead = ["weather", "in"] if i % 2 else ["fly", "to"]
        record = {"text": " ".join(lead + city), "tokens": lead + city, "intent": "weather" if i % 2 else "flight"}
        if i >= 4:
            record["tags"] = ["O", "O", "B-city"] + ["I-city"] * (len(city) - 1)
        lines.append(json.dumps(record))
    path = tmp_path / "slots.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _images(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 60
    label = rng.integers(0, 2, size=n)
    images = rng.integers(0, 60, size=(n, 12, 12)).astype(np.uint8)
    images[label == 1, 3:9, 3:9] = 220  # a bright square: an easy, learnable class
    path = tmp_path / "images.npz"
    np.savez(path, image=images, label=label)
    return path


def task_case(name: str, tmp_path: Path) -> dict:
    if name == "classification":
        return dict(options={"target": "kind"}, table=_frame_with_missing("kind"), missing_rows=range(10),
                    inputs=[{"name": "x", "type": "tabular", "numeric": ["x*"]}])
    if name == "regression":
        return dict(options={"target": "price"}, table=_frame_with_missing("price"), missing_rows=range(10),
                    inputs=[{"name": "x", "type": "tabular", "numeric": ["x*"], "categorical": ["city"]}])
    if name == "detection":
        from test_detection import write_coco

        path, _ = write_coco(tmp_path, n=24)
        return dict(options={}, table=read_table(path), data=path,
                    inputs=[{"name": "image", "type": "image", "root": str(tmp_path / "images")}])
    if name == "text":
        path = _tagging_rows(tmp_path)
        return dict(options={"tokens": "tokens", "tags": "tags"}, table=read_table(path), data=path,
                    missing_rows=range(4), inputs=[{"name": "text", "type": "text", "column": "tokens"}])
    pytest.fail(f"no contract case for the built-in task type '{name}': add one to tests/test_contract.py")


def input_case(name: str, tmp_path: Path) -> dict:
    if name == "tabular":
        return dict(options={"numeric": ["x*"], "categorical": ["city"]}, table=make_table(120),
                    tasks=[{"name": "price", "type": "regression", "target": "price"}])
    if name == "array":
        rng = np.random.default_rng(0)
        x = rng.normal(size=(80, 3, 2)).astype(np.float32)
        path = tmp_path / "arrays.npz"
        np.savez(path, x=x, y=x.sum(axis=(1, 2)))
        return dict(options={"array": "x"}, table=read_table(path), data=path,
                    tasks=[{"name": "y", "type": "regression", "target": "y"}])
    if name == "image":
        path = _images(tmp_path)
        return dict(options={"array": "image"}, table=read_table(path), data=path,
                    tasks=[{"name": "label", "type": "classification", "target": "label"}])
    if name == "text":
        path = _tagging_rows(tmp_path)
        return dict(options={"column": "text"}, table=read_table(path), data=path,
                    tasks=[{"name": "intent", "type": "classification", "target": "intent"}])
    pytest.fail(f"no contract case for the built-in input type '{name}': add one to tests/test_contract.py")


def _built_in(kind: str) -> list[str]:
    return sorted(n for n, ep in entry_points(kind).items() if ep.dist is None or ep.dist.name == BUILT_IN)


@pytest.mark.e2e
@pytest.mark.parametrize("name", _built_in("task"))
def test_built_in_task_keeps_the_contract(name, tmp_path):
    case = task_case(name, tmp_path)
    cls = entry_points("task")[name].load()
    check_task(cls, case.pop("options"), case.pop("table"), folder=tmp_path / "search", **case)


@pytest.mark.e2e
@pytest.mark.parametrize("name", _built_in("input"))
def test_built_in_input_keeps_the_contract(name, tmp_path):
    case = input_case(name, tmp_path)
    cls = entry_points("input")[name].load()
    check_input(cls, case.pop("options"), case.pop("table"), folder=tmp_path / "search", **case)


def test_the_kit_catches_a_task_whose_loss_does_not_match_its_mask(tmp_path):
    from automtl_regression import RegressionTask

    class SummedLoss(RegressionTask):
        def loss(self, y_true, y_pred):  # one number per batch: missing labels could not be masked
            import keras

            return keras.ops.sum(keras.ops.square(y_true - y_pred))

    with pytest.raises(AssertionError, match="must have the mask's shape"):
        check_task(SummedLoss, {"target": "price"}, make_table(60), inputs=[], search=False)


def test_the_kit_catches_unmasked_missing_labels():
    from automtl.api import Targets
    from automtl_regression import RegressionTask

    class FillsZeros(RegressionTask):
        def targets(self, data):
            t = super().targets(data)
            return Targets(y=t.y, mask=np.ones_like(t.mask))  # a fake label where there was none

    frame = _frame_with_missing("price")
    with pytest.raises(AssertionError, match="carry no label but are not masked"):
        check_task(FillsZeros, {"target": "price"}, frame, missing_rows=range(10), inputs=[], search=False)
