"""Image inputs and the detection task: readers, each bad input, box maths, augmentation, end to end."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from automtl.data.readers import read_table
from automtl.data.table import Table
from automtl.errors import DataError
from automtl_detection.demo import make_canvases
from helpers import assert_user_error

from conftest import LEAN_ENDING, LEAN_FLAGS

CANVAS = 24
TINY_SPACE = {
    "parameters": {"image.stages": 2, "image.filters": 8, "image.shift": {"choice": [0.0, 0.1]},
                   "trunk.depth": 0, "strategy": "joint", "learning_rate": 3e-3, "batch_size": 16},
    "per_task": {"head.depth": 1, "head.units": 8},
}


def write_coco(folder: Path, n: int = 40, seed: int = 0, name: str = "coco.json") -> tuple[Path, dict[str, Any]]:
    """A tiny COCO set: 8x8 digits on 24x24 PNG canvases, with a per-image ``count``."""
    images, boxes = make_canvases(n, seed=seed, canvas=CANVAS, scale=1)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    coco: dict[str, Any] = {"images": [], "annotations": [],
                            "categories": [{"id": d + 1, "name": str(d)} for d in range(10)]}
    for i, (img, objects) in enumerate(zip(images, boxes)):
        Image.fromarray(img).save(folder / "images" / f"{i}.png")
        coco["images"].append({"id": i + 1, "file_name": f"{i}.png", "width": CANVAS, "height": CANVAS,
                               "count": len(objects)})
        for x0, y0, x1, y1, d in objects:
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": i + 1,
                                        "category_id": d + 1, "bbox": [x0, y0, x1 - x0, y1 - y0]})
    path = folder / name
    path.write_text(json.dumps(coco))
    return path, coco


def write_experiment(folder: Path, data: str, space: dict | None = None, **search: Any) -> Path:
    (folder / "space.yaml").write_text(yaml.safe_dump(space or TINY_SPACE))
    exp = {
        "name": "det",
        "data": {"train": data, "valid_fraction": 0.25},
        "inputs": [{"name": "image", "type": "image", "root": "images"}],
        "tasks": [{"name": "digits", "type": "detection"},
                  {"name": "count", "type": "classification", "target": "count"}],
        "space": "space.yaml",
        "search": {**LEAN_ENDING, "trials": 1, "epochs": 2, "seed": 0, "out": str(folder / "run"), **search},
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


# -- readers ------------------------------------------------------------------------------------
def test_coco_reader_gives_one_row_per_image_with_boxes_and_image_fields(tmp_path, caplog):
    path, coco = write_coco(tmp_path, n=6)
    coco["images"].append({"id": 99, "file_name": "empty.png", "width": 24, "height": 24, "count": 0})
    coco["annotations"].append({"id": 500, "image_id": 1, "category_id": 3, "bbox": [0, 0, 24, 24], "iscrowd": 1})
    path.write_text(json.dumps(coco))
    with caplog.at_level(logging.WARNING, logger="automtl"):
        table = read_table(path)
    assert len(table) == 7
    assert table.meta["categories"] == [str(d) for d in range(10)]
    first = [a for a in coco["annotations"] if a["image_id"] == 1 and not a.get("iscrowd")]
    assert [o[:4] for o in table.columns["objects"][0]] == [
        (a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]) for a in first]
    assert table.columns["objects"][6] == []  # an image with no objects is kept
    assert table.columns["count"].tolist()[-1] == 0 and table.columns["width"][0] == 24
    assert "1 crowd annotation" in caplog.text  # never dropped without a count
    assert table.row_label(6) == "image id 99 (empty.png)"


def test_box_csv_groups_rows_per_image_and_reads_sizes_from_files(tmp_path):
    (tmp_path / "img").mkdir()
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "img" / "a.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "img" / "b.jpg")
    (tmp_path / "boxes.csv").write_text(
        "image_path,xmin,ymin,xmax,ymax,label,scene\n"
        "img/a.png,1,2,11,12,cat,indoor\n"
        "img/b.jpg,,,,,,outdoor\n"
        "img/a.png,20,5,39,29,dog,indoor\n")
    table = read_table(tmp_path / "boxes.csv")
    assert len(table) == 2
    assert table.columns["objects"][0] == [(1.0, 2.0, 11.0, 12.0, "cat"), (20.0, 5.0, 39.0, 29.0, "dog")]
    assert table.columns["objects"][1] == []
    assert table.columns["width"].tolist() == [40, 20] and table.columns["height"].tolist() == [30, 20]
    assert table.columns["scene"].tolist() == ["indoor", "outdoor"]
    assert table.meta["categories"] == ["cat", "dog"]
    assert Path(table.columns["image_path"][0]).is_absolute()


# -- bad input: each names the file and the record, exit code 2 ---------------------------------
def coco_with(tmp_path: Path, change) -> Path:
    path, coco = write_coco(tmp_path, n=8)
    change(coco)
    path.write_text(json.dumps(coco))
    return write_experiment(tmp_path, path.name)


def test_box_outside_its_image(cli, tmp_path):
    def change(coco):
        coco["annotations"][2]["bbox"] = [20, 4, 10, 8]  # x + w = 30 > 24
    exp = coco_with(tmp_path, change)
    ann = f"annotation id 3"
    assert_user_error(cli("search", "--config", exp), "coco.json", ann, "outside its 24x24")


def test_box_outside_its_image_in_box_csv(cli, tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(tmp_path / "images" / "a.png")
    (tmp_path / "boxes.csv").write_text("image_path,xmin,ymin,xmax,ymax,label,count\nimages/a.png,2,2,30,10,3,1\n")
    exp = write_experiment(tmp_path, "boxes.csv")
    assert_user_error(cli("search", "--config", exp), "boxes.csv", "line 2", "outside its 24x24")


def test_inverted_box(cli, tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(tmp_path / "images" / "a.png")
    (tmp_path / "boxes.csv").write_text("image_path,xmin,ymin,xmax,ymax,label,count\n"
                                        "images/a.png,2,2,10,10,3,2\nimages/a.png,12,2,5,10,4,2\n")
    exp = write_experiment(tmp_path, "boxes.csv")
    assert_user_error(cli("search", "--config", exp), "boxes.csv", "line 3", "inverted", "xmin < xmax")


def test_inverted_box_in_coco(cli, tmp_path):
    def change(coco):
        coco["annotations"][0]["bbox"][2] = -3
    exp = coco_with(tmp_path, change)
    assert_user_error(cli("search", "--config", exp), "coco.json", "annotation id 1", "inverted")


def test_unknown_image_id(cli, tmp_path):
    def change(coco):
        coco["annotations"][1]["image_id"] = 777
    exp = coco_with(tmp_path, change)
    assert_user_error(cli("search", "--config", exp), "coco.json", "annotation id 2", "unknown image id 777")


def test_unknown_image_path(cli, tmp_path):
    def change(coco):
        coco["images"][4]["file_name"] = "nowhere.png"
    exp = coco_with(tmp_path, change)
    assert_user_error(cli("search", "--config", exp), "coco.json", "image id 5 (nowhere.png)", "image not found")


def test_unknown_image_path_in_box_csv(cli, tmp_path):
    (tmp_path / "boxes.csv").write_text("image_path,xmin,ymin,xmax,ymax,label,count\nimages/gone.png,1,1,5,5,3,1\n")
    exp = write_experiment(tmp_path, "boxes.csv")
    assert_user_error(cli("search", "--config", exp), "boxes.csv", "line 2", "image not found", "gone.png")


def test_unreadable_image(cli, tmp_path):
    path, coco = write_coco(tmp_path, n=8)
    (tmp_path / "images" / "6.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    exp = write_experiment(tmp_path, path.name)
    assert_user_error(cli("search", "--config", exp), "coco.json", "image id 7 (6.png)", "cannot read image")


def test_category_missing_from_the_categories_list(cli, tmp_path):
    def change(coco):
        coco["annotations"][3]["category_id"] = 42
    exp = coco_with(tmp_path, change)
    assert_user_error(cli("search", "--config", exp), "coco.json", "annotation id 4",
                      "category_id 42 is missing from the categories list")


def test_label_outside_the_given_classes(cli, tmp_path):
    (tmp_path / "images").mkdir()
    for name in "abcd":
        Image.fromarray(np.zeros((24, 24), np.uint8)).save(tmp_path / "images" / f"{name}.png")
    (tmp_path / "boxes.csv").write_text("image_path,xmin,ymin,xmax,ymax,label,count\n" + "".join(
        f"images/{name}.png,1,1,5,5,zebra,1\n" for name in "abcd"))
    exp = write_experiment(tmp_path, "boxes.csv")
    raw = yaml.safe_load(exp.read_text())
    raw["tasks"][0]["classes"] = ["cat", "dog"]
    exp.write_text(yaml.safe_dump(raw))
    assert_user_error(cli("search", "--config", exp), "boxes.csv", "png (line ", "'zebra' is missing from the categories list")


# -- box maths ------------------------------------------------------------------------------------
def perfect_raw(gt: np.ndarray, grid: int, classes: int) -> np.ndarray:
    """Head outputs that predict exactly the ground truth from every cell assigned to it."""
    import tensorflow as tf

    from automtl_detection.grid import LOG_RANGE, assign, cell_centres

    positive, boxes, cls = (t.numpy()[0] for t in assign(tf.constant(gt[None]), grid, grid))
    cx, cy = (c.numpy() for c in cell_centres(grid, grid))
    raw = np.zeros((grid * grid, 5 + classes), np.float32)
    raw[:, 0] = -10.0
    for g in np.flatnonzero(positive):
        x0, y0, x1, y1 = boxes[g]
        log_d = np.log(np.array([cx[g] - x0, cy[g] - y0, x1 - cx[g], y1 - cy[g]]) * grid)
        raw[g, 0] = 10.0
        raw[g, 1:5] = LOG_RANGE * np.arctanh(log_d / LOG_RANGE)  # inverse of the decoding
        raw[g, 5 + int(cls[g])] = 10.0
    assert positive.sum() > len(gt)  # several cells per object (centre sampling)
    return raw.reshape(1, grid, grid, -1)


def test_detect_recovers_boxes_and_loss_prefers_them():
    import tensorflow as tf

    from automtl_detection.coco_eval import coco_map
    from automtl_detection.grid import detect, loss

    gt = np.array([[0.1, 0.2, 0.3, 0.45, 2], [0.55, 0.5, 0.9, 0.8, 0]], np.float32)
    raw = perfect_raw(gt, 6, 3)
    out = {k: v.numpy() for k, v in detect(tf.constant(raw), 10, 0.05, 0.5).items()}
    assert out["num_detections"].tolist() == [2]
    order = np.argsort(out["class_id"][0, :2])
    np.testing.assert_allclose(out["boxes"][0, :2][order], gt[[1, 0], :4], atol=1e-3)
    assert out["class_id"][0, 2:].tolist() == [-1] * 8  # padding is marked
    y = np.concatenate([gt, [[0, 0, 0, 0, -1]]])[None].astype(np.float32)
    good = float(loss(tf.constant(y), tf.constant(raw))[0])
    bad = float(loss(tf.constant(y), tf.constant(np.roll(raw, 2, axis=2)))[0])
    assert good < 0.2 < bad
    perfect = coco_map([gt], out["boxes"], out["scores"], out["class_id"], out["num_detections"], 3)
    assert perfect["map50"] == pytest.approx(1.0) and perfect["map"] == pytest.approx(1.0)
    shifted = out["boxes"] + np.array([0.1, 0, 0.1, 0], np.float32)
    worse = coco_map([gt], shifted, out["scores"], out["class_id"], out["num_detections"], 3)
    assert worse["map"] < 0.6


def test_augmentation_moves_boxes_with_the_image():
    import tensorflow as tf

    from automtl.core.trial_params import TrialParams
    from automtl_detection import DetectionTask
    from automtl_image import ImageInput

    images = np.zeros((8, 20, 20, 1), np.uint8)
    images[:, 4:8, 2:6] = 255  # an object at x 2..6, y 4..8
    boxes = np.zeros((8, 2, 5), np.float32)
    boxes[:, 0] = [2 / 20, 4 / 20, 6 / 20, 8 / 20, 1]
    boxes[:, 1, 4] = -1
    enc = ImageInput("image", {"array": "pixels"})
    enc.size, enc.tasks = (20, 20), (DetectionTask("det"),)
    x, y = enc.augment({"image": tf.constant(images)}, {"det": tf.constant(boxes), "other": tf.zeros([8])},
                       TrialParams({"image.flip": True, "image.shift": 0.1}), tf.random.Generator.from_seed(3))
    moved, out = x["image"].numpy()[..., 0], y["det"].numpy()
    assert y["other"].shape == (8,)
    assert not (out[:, 0, :4] == boxes[:, 0, :4]).all()  # something moved
    for img, (x0, y0, x1, y1, c), (_, _, _, _, pad) in zip(moved, out[:, 0], out[:, 1]):
        rows, cols = np.nonzero(img)
        assert c == 1 and pad == -1
        np.testing.assert_allclose([x0, y0, x1, y1], [cols.min() / 20, rows.min() / 20,
                                                      (cols.max() + 1) / 20, (rows.max() + 1) / 20], atol=1e-6)


def test_image_input_reads_npz_arrays_and_resizes(tmp_path):
    from automtl.core.trial_params import TrialParams
    from automtl_image import ImageInput

    pixels = np.random.default_rng(0).uniform(0, 1, (6, 10, 12)).astype(np.float32)
    table = Table("x.npz", {"pixels": pixels})
    enc = ImageInput("img", {"array": "pixels", "size": [8, 8]})
    enc.prepare(table)
    spec = enc.specs()[0]
    assert spec.dtype == "float32" and spec.shape == (None, None, 1)
    arr = enc.arrays(table)["img"]
    assert arr.shape == (6, 8, 8, 1) and arr.dtype == np.float32
    import keras

    inp = keras.Input(spec.shape, dtype=spec.dtype, name="img")
    views = enc.build({"img": inp}, TrialParams({"trunk.depth": 2, "trunk.units": 4}))
    assert tuple(views["spatial"].shape) == (None, 2, 2, 8) and tuple(views["vector"].shape) == (None, 16)
    with pytest.raises(DataError, match="uint8 or float"):
        ImageInput("img", {"array": "s"}).prepare(Table("y.npz", {"s": np.full((3, 4, 4), "a")}))
    with pytest.raises(DataError, match=r"y.npz: array 's'.*\[n, height, width\]"):
        ImageInput("img", {"array": "s"}).prepare(Table("y.npz", {"s": np.zeros((3, 4))}))


# -- end to end -----------------------------------------------------------------------------------
SERVE = """
import json, sys
import numpy as np, tensorflow as tf
from PIL import Image
folder = sys.argv[1]
serve = tf.saved_model.load(folder + "/run/best/saved_model").signatures["serving_default"]
imgs = np.stack([np.array(Image.open(folder + f"/images/{i}.png")) for i in range(3)])[..., None]
big = np.repeat(np.repeat(imgs, 2, axis=1), 2, axis=2)  # any size: boxes come back in its pixels
out = serve(image=tf.constant(imgs))
out2 = serve(image=tf.constant(big))
print(json.dumps({"keys": sorted(out), "boxes": out["digits.boxes"].numpy().tolist(),
                  "boxes2": out2["digits.boxes"].numpy().tolist(), "n": out["digits.num_detections"].numpy().tolist(),
                  "class": out["digits.class_id"].numpy().tolist(), "dtype": str(out["digits.boxes"].dtype),
                  "modules": sorted(m for m in sys.modules if m.startswith("automtl"))}))
"""


@pytest.mark.e2e
def test_detection_plus_classification_from_coco_config_serves_boxes(cli, tmp_path):
    path, _ = write_coco(tmp_path, n=48)
    exp = write_experiment(tmp_path, path.name, epochs=3)
    result = cli("search", "--config", exp)
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "run" / "trials.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "digits.map50" in header and "digits.map" in header and "count.accuracy" in header
    manifest = json.loads((tmp_path / "run" / "best" / "automtl.json").read_text())
    tasks = {t["name"]: t for t in manifest["tasks"]}
    assert tasks["digits"]["classes"] == [str(d) for d in range(10)]
    assert tasks["digits"]["outputs"] == ["digits.boxes", "digits.class_id", "digits.label",
                                          "digits.num_detections", "digits.scores"]
    assert manifest["inputs"][0]["dtype"] == "uint8" and manifest["inputs"][0]["size"] == [CANVAS, CANVAS]
    proc = subprocess.run([sys.executable, "-c", SERVE, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["modules"] == []  # plain TensorFlow, no automtl
    boxes, boxes2 = np.array(out["boxes"]), np.array(out["boxes2"])
    assert boxes.shape == (3, 100, 4) and out["dtype"] == "<dtype: 'float32'>"
    n = out["n"]
    assert all(0 <= k <= 100 for k in n)
    for i, k in enumerate(n):
        assert (np.array(out["class"][i][k:]) == -1).all()
        if k:
            assert boxes[i, :k].min() >= 0 and boxes[i, :k].max() <= CANVAS  # pixels of the input image
            np.testing.assert_allclose(boxes2[i, :k], 2 * boxes[i, :k], rtol=0.2, atol=1.5)


def test_detection_demo_writes_coco_data_that_reads(tmp_path, monkeypatch):
    import automtl_detection.demo as demo

    monkeypatch.setattr(demo, "IMAGES", 30)
    exp_path = demo.detection_demo(tmp_path)
    exp = yaml.safe_load(exp_path.read_text())
    assert {t["type"] for t in exp["tasks"]} == {"detection", "classification"}
    from automtl.space import load_space
    from automtl_image import ImageInput

    space = load_space(tmp_path / exp["space"], ["digits", "count"], ImageInput.parameters)
    assert {p.name: getattr(p, "value", None) for p in space.params}["image.backbone"] == "conv"  # runs offline
    table = read_table(tmp_path / exp["data"]["train"])
    assert len(table) == 30
    counts = table.columns["count"].astype(int)
    assert counts.tolist() == [len(o) for o in table.columns["objects"]] and counts.max() >= 2
    for objects, w in zip(table.columns["objects"], table.columns["width"]):
        for x0, y0, x1, y1, label in objects:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= w and label in [str(d) for d in range(10)]


@pytest.mark.slow
def test_detection_demo_runs_from_the_cli(cli, tmp_path):
    result = cli("search", "--demo", "detection", "--trials", "1", "--epochs", "2", "--out", tmp_path / "demo",
                 "--no-report", *LEAN_FLAGS)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo" / "best" / "saved_model" / "saved_model.pb").exists()


def test_image_input_reads_paths_from_a_csv_under_root(tmp_path):
    from automtl_image import ImageInput

    (tmp_path / "pics").mkdir()
    Image.fromarray(np.full((10, 16, 3), 200, np.uint8)).save(tmp_path / "pics" / "a.jpg")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "pics" / "b.png")
    table = Table("data/x.csv", {"file": np.array(["a.jpg", "b.png"], dtype=object)}, meta={"path": "data/x.csv"})
    enc = ImageInput("img", {"column": "file", "root": "pics", "size": [8, 8]})
    enc.base_dir = tmp_path  # the experiment file's folder: option paths resolve from it
    enc.prepare(table)
    images = enc.arrays(table)["img"]
    assert images.shape == (2, 8, 8, 3) and images.dtype == np.uint8  # colour, resized to one size
    assert abs(int(images[0].mean()) - 200) <= 3 and images[1].max() == 0
    with pytest.raises(DataError, match=r"x.csv: row 2: image not found: c.png"):
        enc.arrays(Table("data/x.csv", {"file": np.array(["a.jpg", "c.png"], dtype=object)}))


def test_precision_recall_curves_per_class_follow_cocos_matching():
    from automtl_detection.coco_eval import RECALL_POINTS, coco_precision

    gt = [np.array([[0.1, 0.1, 0.4, 0.4, 0], [0.5, 0.5, 0.9, 0.9, 1]], np.float32),
          np.array([[0.2, 0.2, 0.6, 0.6, 0]], np.float32)]
    # class 0 found twice; class 1 found once after a confident false alarm
    boxes = np.array([[[0.1, 0.1, 0.4, 0.4], [0.0, 0.0, 0.05, 0.05], [0.5, 0.5, 0.9, 0.9]],
                      [[0.2, 0.2, 0.6, 0.6], [0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
    scores = np.array([[0.9, 0.95, 0.8], [0.9, 0, 0]], np.float32)
    classes = np.array([[0, 1, 1], [0, -1, -1]])
    precision = coco_precision(gt, boxes, scores, classes, np.array([3, 1]), num_classes=2)
    at50 = precision[0]  # IoU 0.5: [recall points, classes]
    assert at50.shape == (len(RECALL_POINTS), 2)
    assert np.allclose(at50[:, 0], 1.0)  # every class-0 box found, no false alarm
    assert np.allclose(at50[:, 1], 0.5)  # the one class-1 box comes after one false alarm: precision 1/2
