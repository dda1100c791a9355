"""``automtl predict``'s plugin hooks, without a model: what the image input and the detection task add to it.

The core (``automtl.export.predict``) asks each manifest entry's plugin type;
these tests feed it manifests as exports write them and check what the
built-in image input and detection task answer.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from automtl.errors import DataError
from automtl.export.predict import model_inputs, plan_predict, read_source, serving_batch, serving_outputs

GREY = {"name": "image", "type": "image", "input": "image", "dtype": "float32", "shape": [None, None, None, 1],
        "image": True, "size": [8, 8], "channels": 1, "array": "pixels"}
TABLE = {"name": "features", "type": "tabular", "input": "features", "dtype": "float32", "shape": [None, 2],
         "columns": ["a", "b"]}
DETECTIONS = {"boxes": "boxes", "scores": "scores", "labels": "label", "class_ids": "class_id",
              "count": "num_detections", "image_input": None}


def test_grey_arrays_without_their_channel_axis_get_it():
    out = model_inputs({"inputs": [dict(GREY)], "tasks": []}, {"pixels": np.ones((3, 8, 8), np.uint8)}, "d.npz")
    assert out["image"].shape == (3, 8, 8, 1) and out["image"].dtype == np.float32
    with pytest.raises(DataError, match=r"array 'pixels' has shape \(8, 8, 3, 2\) per row"):
        model_inputs({"inputs": [dict(GREY)], "tasks": []}, {"pixels": np.ones((3, 8, 8, 3, 2))}, "d.npz")


def test_an_image_input_asks_for_smaller_batches():
    assert serving_batch({"inputs": [TABLE]}) == 1024
    assert serving_batch({"inputs": [TABLE, GREY]}) == 64
    assert serving_batch({"inputs": [{**TABLE, "type": "not-installed"}]}) == 1024


def test_a_folder_of_images_feeds_the_one_image_input(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "sub/a.jpg"):
        Image.new("L", (4, 4)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    inputs = [dict(GREY)]
    data = read_source(tmp_path, inputs)
    assert data.columns["image_path"].tolist() == ["b.png", "sub/a.jpg"] and data.rows == 2
    assert data.keep == ("image_path",) and inputs[0]["column"] == "image_path"
    one = read_source(tmp_path / "b.png", [dict(GREY)])
    assert one.columns["image_path"].tolist() == ["b.png"]
    with pytest.raises(DataError, match="feeds a model with one image input; this model's inputs are features"):
        read_source(tmp_path, [TABLE])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="the folder holds no image files"):
        read_source(empty, [dict(GREY)])


def test_boxes_come_back_in_each_images_own_pixels():
    manifest = {"inputs": [GREY], "tasks": [{"name": "d", "type": "detection", "detections": DETECTIONS}]}
    outputs = {"d.boxes": np.ones((2, 3, 4), np.float32)}
    facts = {"image": {"width": np.array([16.0, 8.0]), "height": np.array([8.0, 4.0])}}
    serving_outputs(manifest, outputs, facts)
    np.testing.assert_allclose(outputs["d.boxes"][:, 0], [[2, 1, 2, 1], [1, 0.5, 1, 0.5]])
    serving_outputs(manifest, outputs, {})  # a data file of arrays: no sizes, nothing to rescale
    np.testing.assert_allclose(outputs["d.boxes"][:, 0], [[2, 1, 2, 1], [1, 0.5, 1, 0.5]])


def test_the_table_writes_one_list_of_boxes_per_image_and_coco_needs_a_detection_task(tmp_path):
    from automtl.core.predictions import Predictions
    from automtl.export.predict import prediction_format

    task = {"name": "d", "type": "detection", "detections": DETECTIONS, "category_ids": [7, 9], "classes": ["x", "y"]}
    manifest = {"inputs": [GREY], "tasks": [task]}
    outputs = {"d.boxes": np.array([[[1, 2, 3, 4], [0, 0, 0, 0]]], np.float32), "d.scores": np.array([[0.9, 0.0]]),
               "d.label": np.array([[b"y", b""]]), "d.class_id": np.array([[1, -1]]), "d.num_detections": np.array([1])}
    order = list(outputs)
    columns = {"image_path": np.array(["12.png"], dtype=object)}
    predictions = Predictions(manifest, dict(outputs), order, columns, {}, 1)
    written = prediction_format("table").write(tmp_path / "p.jsonl", predictions)
    assert written == ["d.num_detections", "d.detections"]
    row = json.loads((tmp_path / "p.jsonl").read_text())
    assert row["d.detections"] == [{"box": [1.0, 2.0, 3.0, 4.0], "score": 0.9, "label": "y", "class_id": 1}]
    coco = prediction_format("coco")
    assert coco.check({"tasks": []}) == "--format coco needs a model with one detection task; this one has 0"
    coco.write(tmp_path / "r.json", Predictions(manifest, dict(outputs), order, columns, {}, 1))
    assert json.loads((tmp_path / "r.json").read_text()) == [
        {"image_id": 12, "category_id": 9, "bbox": [1.0, 2.0, 2.0, 2.0], "score": 0.9}]


def test_an_unknown_format_names_the_installed_ones(tmp_path):
    from automtl.errors import AutomtlError

    with pytest.raises(AutomtlError, match="--format nope: unknown prediction format; installed: coco, table"):
        plan_predict(tmp_path, tmp_path / "d.csv", tmp_path / "p.csv", format="nope")
