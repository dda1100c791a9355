"""No third-party log line reaches the user at the default verbosity, in any command; ``-v`` brings them back.

Each command runs as a real process (TensorFlow's C++ lines go to file
descriptor 2, which only a subprocess sees) on a small image search whose
space samples a Keras application backbone (its "`input_shape` is undefined or
non-square" warning) and trains in trial processes.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_images_e2e import BACKBONE, SIDE, write_images

#: every test here runs a search, an export or a distillation: the e2e loop
pytestmark = pytest.mark.e2e

pytestmark = pytest.mark.slow

#: What TensorFlow, absl, Keras and the converters print when left alone.
NOISE = re.compile(r"WARNING|[IWE]0000 |absl|cuda|oneDNN|Warning:|site-packages|XNNPACK|deprecat|retracing")


def automtl(*args: str | Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "AUTOMTL_TF_LOG")}
    return subprocess.run([sys.executable, "-m", "automtl", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env={**clean, **env})


def assert_clean(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr
    noisy = [line for line in result.stdout.splitlines() if NOISE.search(line)]
    assert not noisy, noisy


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images and a space that samples a Keras application backbone, trained in trial processes."""
    import keras

    folder = tmp_path_factory.mktemp("quiet")
    write_images(folder, n=32)
    (folder / "weights").mkdir()
    app = keras.applications.MobileNetV3Small(input_shape=(SIDE, SIDE, 3), include_top=False, weights=None,
                                              minimalistic=True)
    app.save_weights(folder / "weights" / f"{BACKBONE}.weights.h5")
    space = {"parameters": {"image.backbone": BACKBONE, "image.fine_tune": "top", "image.trainable_blocks": 1,
                            "trunk.depth": 1, "trunk.units": 8, "batch_size": 16, "learning_rate": 3e-3},
             "per_task": {"head.units": 8, "head.depth": 1}}
    (folder / "space.yaml").write_text(yaml.safe_dump(space))
    exp = {"name": "quiet", "data": {"train": "data.csv", "valid_fraction": 0.25},
           "inputs": [{"name": "image", "type": "image", "weights": "weights"}],
           "tasks": [{"name": "label", "type": "classification", "target": "label"},
                     {"name": "brightness", "type": "regression", "target": "brightness"}],
           "space": "space.yaml",
           "search": {"trials": 2, "epochs": 1, "seed": 0, "out": "run", "baselines": "off", "refit": False,
                      "ensemble": 0}}
    (folder / "experiment.yaml").write_text(yaml.safe_dump(exp))
    return folder


def test_an_image_search_with_a_backbone_predict_and_report_are_quiet(image_folder: Path):
    assert_clean(automtl("search", "--config", "experiment.yaml", cwd=image_folder))
    assert_clean(automtl("predict", "run/best", "--data", "images", "--out", "pred.csv", cwd=image_folder))
    assert_clean(automtl("report", "run", cwd=image_folder))
    # -v (or AUTOMTL_TF_LOG) brings TensorFlow's own lines back
    loud = automtl("predict", "run/best", "--data", "images", "--out", "pred2.csv", "-v", cwd=image_folder)
    assert loud.returncode == 0, loud.stderr
    assert any(word in loud.stderr for word in ("I0000", "oneDNN", "absl", "cuda")), loud.stderr


def test_a_table_search_export_to_every_format_and_distill_are_quiet(write_experiment, tmp_path: Path):
    """In-process trials (tf.function retracing notes), the ensemble and baselines, tf2onnx and LiteRT."""
    write_experiment(search={"trials": 3, "epochs": 2, "seed": 0, "trials_per_process": 0, "ensemble": 2,
                             "out": str(tmp_path / "run")})
    assert_clean(automtl("search", "--config", "experiment.yaml", cwd=tmp_path))
    formats = "onnx,tflite" if importlib.util.find_spec("tf2onnx") else "tflite"
    assert_clean(automtl("export", "run", "--ensemble", "--out", "exported", "--format", formats, cwd=tmp_path))
    assert_clean(automtl("distill", "run", "--out", "student", "--epochs", "1", "--mixup", "0", cwd=tmp_path))
