"""Images end to end: a searched pretrained backbone from a weights folder, streamed from a disk cache,
exported, served at another size, and scored by `automtl predict` on a folder and on a COCO file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from automtl.core.trial import trial_dir
from helpers import assert_user_error

from conftest import LEAN_ENDING

#: every test here runs a search (or reads one that a module fixture ran): the e2e loop
pytestmark = pytest.mark.e2e

BACKBONE = "mobilenet_v3_small_minimalistic"
SIDE = 32


def write_images(folder: Path, n: int = 48, seed: int = 0) -> Path:
    """Colour PNGs, half with a bright square (label) and a size target; a CSV of their paths."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = ["image_path,label,brightness"]
    for i in range(n):
        square = int(rng.integers(0, 2))
        img = rng.integers(0, 80, (SIDE, SIDE, 3)).astype(np.uint8)
        if square:
            img[8:24, 8:24] += 150
        Image.fromarray(img).save(folder / "images" / f"{i}.png")
        rows.append(f"images/{i}.png,{'square' if square else 'plain'},{img.mean() / 255:.4f}")
    (folder / "data.csv").write_text("\n".join(rows) + "\n")
    return folder / "data.csv"


@pytest.fixture(scope="module")
def backbone_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-trial search over conv trunk vs pretrained backbone, the images streamed from a disk cache."""
    import keras

    from automtl.cli import cli
    from click.testing import CliRunner

    folder = tmp_path_factory.mktemp("backbone")
    write_images(folder)
    (folder / "weights").mkdir()
    app = keras.applications.MobileNetV3Small(input_shape=(SIDE, SIDE, 3), include_top=False, weights=None,
                                              minimalistic=True)
    app.save_weights(folder / "weights" / f"{BACKBONE}.weights.h5")
    space = {
        "parameters": {
            "image.backbone": {"choice": ["conv", BACKBONE]},
            "image.fine_tune": {"choice": ["top"], "when": {"image.backbone": BACKBONE}},
            "image.trainable_blocks": {"fixed": 3, "when": {"image.backbone": BACKBONE}},
            "image.stages": {"fixed": 2, "when": {"image.backbone": "conv"}},
            "image.filters": {"fixed": 8, "when": {"image.backbone": "conv"}},
            "trunk.depth": 1, "trunk.units": 16, "batch_size": 16, "learning_rate": 3e-3,
        },
        "per_task": {"head.units": 8, "head.depth": 1},
    }
    (folder / "space.yaml").write_text(yaml.safe_dump(space))
    exp = {
        "name": "img", "data": {"train": "data.csv", "valid_fraction": 0.25},
        "inputs": [{"name": "image", "type": "image", "weights": "weights", "cache": "disk"}],
        "tasks": [{"name": "label", "type": "classification", "target": "label"},
                  {"name": "brightness", "type": "regression", "target": "brightness"}],
        "space": "space.yaml",
        "search": {**LEAN_ENDING, "trials": 2, "epochs": 1, "seed": 0, "out": str(folder / "run"), "trials_per_process": 0},
    }
    (folder / "experiment.yaml").write_text(yaml.safe_dump(exp))
    result = CliRunner().invoke(cli, ["search", "--config", str(folder / "experiment.yaml"), "--no-report"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder


SERVE = """
import json, sys
import numpy as np, tensorflow as tf
serve = tf.saved_model.load(sys.argv[1] + "/saved_model").signatures["serving_default"]
rng = np.random.default_rng(0)
out = {}
for side in (32, 45):  # the training size, and another one: resized inside the model
    images = rng.integers(0, 255, (3, side, side, 3)).astype(np.uint8)
    result = serve(image=tf.constant(images))
    out[side] = {k: v.numpy().tolist() for k, v in result.items() if v.dtype != tf.string}
print(json.dumps({"out": out, "modules": sorted(m for m in sys.modules if m.startswith("automtl"))}))
"""


def test_searched_backbone_streams_fine_tunes_as_searched_and_serves_other_sizes(backbone_run, cli):
    import keras

    run = backbone_run / "run"
    trials = json.loads((run / "trials.json").read_text())["trials"]
    backbones = {t["params"]["image.backbone"]: t["number"] for t in trials if t["state"] == "complete"}
    assert set(backbones) == {"conv", BACKBONE}  # both trunks ran
    caches = sorted((run / "cache").glob("images-32x32x3-*.npy"))
    assert len(caches) == 2  # training and validation images, decoded once, read per batch
    number = backbones[BACKBONE]
    import automtl_image.layers  # noqa: F401  (registers the image layers for loading)

    model = keras.saving.load_model(trial_dir(run, number) / "model.keras")
    backbone = model.get_layer("image_backbone")
    trainable = {layer.name for layer in backbone.layers if layer.trainable_weights}
    assert trainable and all(n.startswith(("expanded_conv_9", "expanded_conv_10", "conv_1")) for n in trainable)
    assert not any(n.endswith("_bn") for n in trainable)  # pretrained BatchNorm stays frozen

    out_dir = backbone_run / "export"
    result = cli("export", run, "--trial", number, "--out", out_dir)
    assert result.exit_code == 0, result.output
    proc = subprocess.run([sys.executable, "-c", SERVE, str(out_dir)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    assert served["modules"] == []  # plain TensorFlow
    for side in ("32", "45"):
        probs = np.array(served["out"][side]["label.probabilities"])
        assert probs.shape == (3, 2) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert np.isfinite(served["out"][side]["brightness.value"]).all()


def test_predict_scores_a_folder_of_images_as_the_saved_model_does(backbone_run, cli, tmp_path):
    import tensorflow as tf

    from automtl_image.decode import load_files

    best = backbone_run / "run" / "best"
    folder = backbone_run / "images"
    result = cli("predict", best, "--data", folder, "--out", tmp_path / "pred.csv")
    assert result.exit_code == 0, result.output
    import pandas as pd

    pred = pd.read_csv(tmp_path / "pred.csv")
    files = sorted(p.name for p in folder.glob("*.png"))
    assert pred["image_path"].tolist() == files and len(pred) == 48
    decoded = load_files([str(folder / f) for f in files], 3, (SIDE, SIDE), str)
    serve = tf.saved_model.load(str(best / "saved_model")).signatures["serving_default"]
    direct = serve(image=tf.constant(decoded))
    np.testing.assert_allclose(pred["brightness.value"], direct["brightness.value"].numpy(), rtol=1e-4, atol=1e-5)
    assert pred["label.label"].tolist() == [s.decode() for s in direct["label.label"].numpy()]
    # an NPZ of images of another size, and a CSV of paths under --root, serve too
    np.savez(tmp_path / "big.npz", pixels=np.repeat(np.repeat(decoded[:5], 2, axis=1), 2, axis=2))
    pd.DataFrame({"image_path": files[:4]}).to_csv(tmp_path / "list.csv", index=False)
    ok = cli("predict", best, "--data", tmp_path / "list.csv", "--root", folder, "--out", tmp_path / "p2.jsonl")
    assert ok.exit_code == 0, ok.output
    assert len(pd.read_json(tmp_path / "p2.jsonl", lines=True)) == 4
    missing = cli("predict", best, "--data", tmp_path / "list.csv", "--out", tmp_path / "p3.csv")
    assert_user_error(missing, "list.csv", "row 1: image not found: 0.png", "--root")


def test_predict_writes_boxes_per_image_and_coco_results_that_pycocotools_scores(cli, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from test_detection import CANVAS, write_coco, write_experiment

    path, coco = write_coco(tmp_path, n=32)
    exp = write_experiment(tmp_path, path.name, epochs=1)
    raw = yaml.safe_load(exp.read_text())
    raw["tasks"][0]["score_threshold"] = 0.001  # an untrained model's boxes still come out
    raw["tasks"][0]["max_detections"] = 10
    exp.write_text(yaml.safe_dump(raw))
    result = cli("search", "--config", exp, "--no-report")
    assert result.exit_code == 0, result.output
    best = tmp_path / "run" / "best"
    result = cli("predict", best, "--data", path, "--root", tmp_path / "images", "--format", "coco",
                 "--out", tmp_path / "results.json")
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert results and {"image_id", "category_id", "bbox", "score"} <= set(results[0])
    assert {r["image_id"] for r in results} <= {img["id"] for img in coco["images"]}
    assert {r["category_id"] for r in results} <= {c["id"] for c in coco["categories"]}
    for ann in coco["annotations"]:  # the fields COCOeval reads, which training does not need
        ann.update(iscrowd=0, area=ann["bbox"][2] * ann["bbox"][3])
    (tmp_path / "truth.json").write_text(json.dumps(coco))
    truth = COCO(str(tmp_path / "truth.json"))
    evaluation = COCOeval(truth, truth.loadRes(str(tmp_path / "results.json")), "bbox")
    evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
    assert -1.0 <= evaluation.stats[1] <= 1.0

    # a folder of images at twice the training size: predict decodes and resizes them as training did,
    # and gives the boxes back in each image's own pixels
    import tensorflow as tf

    from automtl_image.decode import load_files

    big = tmp_path / "big"
    big.mkdir()
    for name in ("0.png", "1.png", "2.png"):
        Image.open(tmp_path / "images" / name).resize((2 * CANVAS, 2 * CANVAS)).save(big / name)
    large = cli("predict", best, "--data", big, "--out", tmp_path / "large.jsonl")
    assert large.exit_code == 0, large.output
    import pandas as pd

    lists = pd.read_json(tmp_path / "large.jsonl", lines=True)["digits.detections"].tolist()
    decoded = load_files([str(big / n) for n in ("0.png", "1.png", "2.png")], 1, (CANVAS, CANVAS), str)
    served = tf.saved_model.load(str(best / "saved_model")).signatures["serving_default"](image=tf.constant(decoded))
    for i, dets in enumerate(lists):
        k = int(served["digits.num_detections"][i])
        assert len(dets) == k and {"box", "score", "label", "class_id"} <= set(dets[0])
        np.testing.assert_allclose([d["box"] for d in dets], 2 * served["digits.boxes"].numpy()[i, :k], atol=0.02)
        assert [d["label"] for d in dets] == [s.decode() for s in served["digits.label"].numpy()[i, :k]]
    bad = cli("predict", best, "--data", big, "--format", "coco", "--out", tmp_path / "x.csv")
    assert_user_error(bad, "--format coco writes a JSON file")


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_predict_reads_a_folder_of_images_for_a_model_trained_on_npz_arrays(dtype, cli, tmp_path):
    """The exported model takes pixels; a folder of PNGs feeds it as the training arrays did (float
    arrays in 0-1: the files' 0-255 mapped onto that scale)."""
    import pandas as pd

    rng = np.random.default_rng(1)
    side, n = 16, 40
    pixels = rng.integers(0, 256, (n, side, side, 3)).astype(np.uint8)
    label = np.where(pixels[:, 4:12, 4:12].mean(axis=(1, 2, 3)) > 127, "bright", "dark")
    (tmp_path / "images").mkdir()
    for i, img in enumerate(pixels):
        Image.fromarray(img).save(tmp_path / "images" / f"img_{i:03d}.png")
    arrays = pixels.astype(np.float32) / 255.0 if dtype == "float32" else pixels
    np.savez(tmp_path / "data.npz", pixels=arrays, label=label, level=pixels.mean(axis=(1, 2, 3)) / 255.0)
    space = {"parameters": {"image.backbone": "conv", "image.stages": 1, "image.filters": 4, "trunk.depth": 1,
                            "trunk.units": 8, "batch_size": 16, "learning_rate": 3e-3},
             "per_task": {"head.units": 4, "head.depth": 1}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    exp = {"name": "npz", "data": {"train": "data.npz", "valid_fraction": 0.25},
           "inputs": [{"name": "image", "type": "image", "array": "pixels"}],
           "tasks": [{"name": "label", "type": "classification", "target": "label"},
                     {"name": "level", "type": "regression", "target": "level"}],
           "space": "space.yaml",
           "search": {"trials": 1, "epochs": 1, "seed": 0, "out": str(tmp_path / "run"), "trials_per_process": 0,
                      "baselines": "off", "ensemble": 0, "refit": False}}
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(exp))
    result = cli("search", "--config", tmp_path / "experiment.yaml", "--no-report")
    assert result.exit_code == 0, result.output
    best = tmp_path / "run" / "best"
    from_files = cli("predict", best, "--data", tmp_path / "images", "--out", tmp_path / "files.csv")
    assert from_files.exit_code == 0, from_files.output
    from_arrays = cli("predict", best, "--data", tmp_path / "data.npz", "--out", tmp_path / "arrays.csv")
    assert from_arrays.exit_code == 0, from_arrays.output
    a, b = pd.read_csv(tmp_path / "files.csv"), pd.read_csv(tmp_path / "arrays.csv")
    assert len(a) == n and a["image_path"].tolist() == [f"img_{i:03d}.png" for i in range(n)]
    np.testing.assert_allclose(a["level.value"], b["level.value"], rtol=1e-4, atol=1e-5)
    for column in [c for c in b.columns if c.startswith("label.p")]:
        np.testing.assert_allclose(a[column], b[column], atol=1e-5)
