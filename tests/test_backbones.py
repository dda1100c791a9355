"""Pretrained image backbones: weights from a file, what fine-tuning trains, learning-rate scales, pixels.

Offline, as CI is: a backbone built with ``weights=None`` is saved to a file
and loaded back through the input's ``weights`` option.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from automtl.data.table import Table
from automtl_classification import ClassificationTask
from helpers import prepared, train_once

BACKBONE = "mobilenet_v3_small_minimalistic"  # the smallest keras.applications backbone


def squares(n: int = 64, seed: int = 0, side: int = 32) -> Table:
    """Grey images, half of them holding a bright square: a task a few steps can start on."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    pixels = rng.integers(0, 80, (n, side, side)).astype(np.uint8)
    pixels[label == 1, side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] += 150
    return Table("squares.npz", {"pixels": pixels, "label": label})


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the backbone's weights, as a user would save them (random here: no network)."""
    import keras

    folder = tmp_path_factory.mktemp("weights")
    keras.utils.set_random_seed(7)
    app = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), include_top=False, weights=None,
                                              minimalistic=True)
    app.save_weights(folder / f"{BACKBONE}.weights.h5")
    return folder


def backbone_trial(weights: str, params: dict, epochs: int = 1, **options):
    from automtl_image import ImageInput

    enc = ImageInput("img", {"array": "pixels", "backbone": BACKBONE, "weights": weights, **options})
    enc.base_dir = Path(".")
    task = ClassificationTask("label", {"target": "label"})
    train, valid = prepared([enc], [task], squares(64), squares(16, seed=1))
    base = {"trunk.depth": 0, "batch_size": 16, "learning_rate": 3e-3, "head.units": 8}
    return enc, train_once([enc], [task], train, valid, {**base, **params}, epochs=epochs)


def snapshot(model) -> dict[str, np.ndarray]:
    """Every variable of the nested backbone model (BatchNorm statistics included), by path."""
    return {v.path: np.array(v.numpy()) for v in model.get_layer("img_backbone").weights}


def test_weights_load_from_a_file_and_a_frozen_backbone_does_not_change(weights_dir):
    import keras

    file = weights_dir / f"{BACKBONE}.weights.h5"
    _, (assembled, trainer, _) = backbone_trial(str(file), {"image.fine_tune": "frozen"}, epochs=1)
    model = assembled.model
    backbone = model.get_layer("img_backbone")
    assert not backbone.trainable_variables  # feature extraction: nothing of the backbone trains
    saved = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), include_top=False, weights=None,
                                                minimalistic=True)
    saved.load_weights(file)
    kernels = {layer.name: layer.get_weights() for layer in saved.layers if layer.get_weights()}
    for layer in backbone.layers:
        if layer.name in kernels:  # the trial's backbone holds the file's weights, after training
            for mine, theirs in zip(layer.get_weights(), kernels[layer.name]):
                np.testing.assert_array_equal(mine, theirs)
    head = assembled.heads["label"].trainable_variables
    assert head and all(np.isfinite(v.numpy()).all() for v in head)


def test_top_trains_exactly_the_last_blocks_and_keeps_batchnorm_frozen(weights_dir):
    from automtl_image.backbones import blocks_of

    enc, (assembled, trainer, _) = backbone_trial(str(weights_dir), {"image.fine_tune": "top",
                                                                    "image.trainable_blocks": 2}, epochs=1)
    backbone = assembled.model.get_layer("img_backbone")
    # retrain from the file's weights and compare layer by layer: only the last two blocks moved
    import keras

    fresh = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), include_top=False, weights=None,
                                                minimalistic=True)
    fresh.load_weights(weights_dir / f"{BACKBONE}.weights.h5")
    groups = blocks_of(fresh, BACKBONE)
    last_two = {layer.name for _, layers in groups[-2:] for layer in layers}
    assert [g for g, _ in groups[-2:]] == ["expanded_conv_10", "conv_1"]
    moved, kept = set(), set()
    for layer in fresh.layers:
        before = layer.get_weights()
        if not before:
            continue
        after = backbone.get_layer(layer.name).get_weights()
        same = all(np.array_equal(a, b) for a, b in zip(before, after))
        (kept if same else moved).add(layer.name)
    convs = {n for n in last_two if fresh.get_layer(n).get_weights() and not n.endswith("_bn")}
    assert moved == convs  # the last two blocks' convolutions, and nothing else
    assert any(n.endswith("_bn") for n in kept & last_two)  # their BatchNorm layers stay frozen


def test_backbone_layers_learn_at_the_scaled_learning_rate(weights_dir):
    import tensorflow as tf

    from automtl.training.optimizer import FusedAdam

    enc, (assembled, trainer, _) = backbone_trial(str(weights_dir), {"image.fine_tune": "all",
                                                                    "image.backbone_lr_scale": 0.25}, epochs=1)
    variables = trainer.strategy.variables
    scales = assembled.lr_scales(variables)
    backbone = {id(v) for v in assembled.model.get_layer("img_backbone").trainable_variables}
    assert backbone and {s for v, s in zip(variables, scales) if id(v) in backbone} == {0.25}
    assert {s for v, s in zip(variables, scales) if id(v) not in backbone} == {1.0}
    # Adam's first step moves every weight by about lr: a scaled variable moves that much less
    a, b = tf.Variable([1.0, 1.0]), tf.Variable([1.0, 1.0])
    opt = FusedAdam(0.1, [a, b], lr_scales=[1.0, 0.25])
    opt.apply_gradients([(tf.constant([1.0, -2.0]), a), (tf.constant([1.0, -2.0]), b)])
    np.testing.assert_allclose(1.0 - a.numpy(), [0.1, -0.1], rtol=1e-3)
    np.testing.assert_allclose(1.0 - b.numpy(), [0.025, -0.025], rtol=1e-3)


def test_spatial_view_has_the_searched_stride_and_small_images_are_upscaled(weights_dir):
    import keras

    from automtl.core.trial_params import TrialParams
    from automtl_image import ImageInput

    enc = ImageInput("img", {"array": "pixels", "backbone": BACKBONE, "weights": "none"})
    enc.prepare(squares(8, side=20))  # 20x20: upscaled to the backbones' 32x32 minimum
    inp = keras.Input((None, None, 1), dtype="uint8", name="img")
    for stride, side in ((8, 4), (16, 2)):
        views = enc.build({"img": inp}, TrialParams({"image.stride": stride}))
        assert tuple(views["spatial"].shape[1:3]) == (side, side)
        assert tuple(views["vector"].shape) == (None, 576)  # pooled final map (MobileNetV3 small)


def test_backbone_pixels_follow_each_backbones_convention():
    import keras

    from automtl_image.layers import CAFFE_MEANS_BGR, BackbonePixels

    grey = np.array([[[[0.0], [1.0]]]], np.float32)  # floats in [0, 1], one channel
    scaled = BackbonePixels("internal", 255.0)(grey).numpy()
    assert scaled.shape == (1, 1, 2, 3) and scaled[0, 0, 1].tolist() == [255.0] * 3
    tf_mode = BackbonePixels("tf", 255.0)(grey).numpy()
    np.testing.assert_allclose(tf_mode[0, 0, :, 0], [-1.0, 1.0])
    rgb = np.array([[[[10.0, 20.0, 30.0]]]], np.float32)
    caffe = BackbonePixels("caffe")(rgb).numpy()[0, 0, 0]
    np.testing.assert_allclose(caffe, np.array([30.0, 20.0, 10.0]) - np.array(CAFFE_MEANS_BGR), rtol=1e-6)
    layer = BackbonePixels.from_config(BackbonePixels("caffe", 2.0).get_config())
    assert (layer.mode, layer.scale) == ("caffe", 2.0)
    assert keras.saving.get_registered_object("automtl_image>BackbonePixels") is BackbonePixels


def test_weights_that_do_not_fit_and_missing_weights_are_clear_errors(tmp_path, weights_dir):
    from automtl.errors import ConfigError
    from automtl_image import ImageInput
    from automtl_image.backbones import application

    with pytest.raises(ValueError, match=r"does not fit backbone 'resnet50'"):
        application("resnet50", (32, 32), weights_dir / f"{BACKBONE}.weights.h5")
    with pytest.raises(ValueError, match=r"no weights for backbone 'resnet50' in folder"):
        application("resnet50", (32, 32), weights_dir)
    enc = ImageInput("img", {"array": "pixels", "backbone": BACKBONE, "weights": "nowhere/w.h5"})
    enc.base_dir = tmp_path
    with pytest.raises(ConfigError, match=r"input 'img': option 'weights': .*nowhere/w.h5 not found"):
        enc.prepare(squares(4))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v2", "efficientnet_b0",
                                  "efficientnet_v2_b0", "resnet50"])
def test_every_backbone_offers_strides_8_16_32_and_blocks(name):
    from automtl_image.backbones import application, blocks_of, tap_indices

    app = application(name, (64, 64), None)
    taps = tap_indices(app, (64, 64))
    assert [tuple(app.layers[taps[s]].output.shape[1:3]) for s in (8, 16, 32)] == [(8, 8), (4, 4), (2, 2)]
    blocks = [b for b, _ in blocks_of(app, name)]
    assert blocks[0] == "stem" and len(blocks) == len(set(blocks)) and len(blocks) >= 10


def test_bad_backbone_values_in_a_space_are_refused_before_any_trial():
    from automtl.errors import ConfigError
    from automtl.space import parse_space
    from automtl_image import ImageInput

    for key, value in (("image.backbone", "vgg99"), ("image.fine_tune", "half"), ("image.stride", 4)):
        with pytest.raises(ConfigError, match=rf"s.yaml: {key}: unknown value {value!r}; expected one of"):
            parse_space({"parameters": {key: {"choice": [value]}}}, "s.yaml", ["t"], ImageInput.parameters)
    for key, value, why in (("image.trainable_blocks", 0, ">= 1"), ("image.backbone_lr_scale", 0.0, r"lie in \(0, 10\]")):
        with pytest.raises(ConfigError, match=rf"s.yaml: {key}: .*{why}"):
            parse_space({"parameters": {key: {"choice": [value]}}}, "s.yaml", ["t"], ImageInput.parameters)


@pytest.mark.e2e
def test_a_detection_head_trains_on_a_backbones_stride_8_map():
    from automtl.api import object_column
    from automtl_detection import DetectionTask
    from automtl_detection.demo import make_canvases
    from automtl_image import ImageInput

    images, boxes = make_canvases(24, seed=3, canvas=32, scale=1)
    table = Table("canvas.npz", {"pixels": images, "width": np.full(24, 32.0), "height": np.full(24, 32.0),
                                 "objects": object_column([[(*b[:4], str(b[4])) for b in bs] for bs in boxes])})
    enc = ImageInput("img", {"array": "pixels", "backbone": BACKBONE, "weights": "none"})
    task = DetectionTask("digits", {"classes": [str(d) for d in range(10)]})
    enc.tasks = (task,)
    train, valid = prepared([enc], [task], table, table)
    assembled, _, fit = train_once([enc], [task], train, valid, {"image.stride": 8, "trunk.depth": 0, "batch_size": 8,
                                                                 "head.units": 8, "head.depth": 1}, epochs=1)
    assert tuple(assembled.model.output["digits"].shape[1:3]) == (4, 4)  # a 4x4 grid of cells on 32x32 images
    assert np.isfinite(fit.metrics["digits"]["map50"])


def test_weight_decay_follows_each_variables_scaled_learning_rate():
    """AdamW's decoupled decay (var -= lr * weight_decay * var) uses the variable's own (scaled) rate."""
    import tensorflow as tf

    from automtl.training.optimizer import FusedAdam

    fresh, backbone = tf.Variable(tf.ones((2, 2))), tf.Variable(tf.ones((2, 2)))
    opt = FusedAdam(0.1, [fresh, backbone], weight_decay=0.5, lr_scales=[1.0, 0.1])
    zero = tf.zeros((2, 2))
    opt.apply_gradients([(zero, fresh), (zero, backbone)])  # a zero gradient: Adam moves nothing, decay does
    np.testing.assert_allclose(fresh.numpy(), 1 - 0.1 * 0.5, rtol=1e-6)
    np.testing.assert_allclose(backbone.numpy(), 1 - 0.01 * 0.5, rtol=1e-6)


@pytest.mark.slow  # converts a MobileNet twice (~45 s of CPU)
def test_a_backbone_on_small_images_exports_to_onnx_and_litert_at_the_training_size(weights_dir, tmp_path):
    """12x12 images are upscaled to the backbone's 32x32 inside the model, after the cut where ONNX and
    LiteRT take their images: those take the training size, with the SavedModel's outputs."""
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    from automtl_image import ImageInput
    from test_export_formats import assert_parity, assert_runtimes_match_saved_model, export

    enc = ImageInput("img", {"array": "pixels", "backbone": BACKBONE, "weights": str(weights_dir),
                             "fine_tune": "frozen"})
    enc.base_dir = Path(".")
    task = ClassificationTask("label", {"target": "label"})
    train, valid = prepared([enc], [task], squares(32, side=12), squares(8, seed=1, side=12))
    out, manifest = export(tmp_path, [enc], [task], train, valid,
                           {"trunk.depth": 0, "batch_size": 16, "head.units": 8}, epochs=1)
    assert_parity(manifest)
    image = next(i for i in manifest["formats"]["onnx"]["inputs"] if i["name"] == "img")
    assert image["shape"] == [None, 12, 12, 1]
    assert_runtimes_match_saved_model(out, valid.x)


def test_offline_imagenet_weights_are_found_before_the_first_trial(cli, tmp_path, monkeypatch):
    """No cached weights and no network: a space that samples backbones drops them with one note in
    the start-up line; a space that fixes one is refused with the fix."""
    import yaml

    from automtl_image import backbones
    from test_images_e2e import write_images

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras"))
    monkeypatch.setattr(backbones, "can_download", lambda timeout=2.0: False)
    write_images(tmp_path, n=24)

    def experiment(name: str, backbone: dict) -> Path:
        space = {"parameters": {"image.backbone": backbone, "image.stages": 1, "image.filters": 4, "trunk.depth": 1,
                                "trunk.units": 8, "batch_size": 16},
                 "per_task": {"head.units": 4, "head.depth": 1}}
        (tmp_path / f"{name}.space.yaml").write_text(yaml.safe_dump(space))
        exp = {"name": name, "data": {"train": "data.csv", "valid_fraction": 0.25},
               "inputs": [{"name": "image", "type": "image"}],  # weights: imagenet, the default
               "tasks": [{"name": "label", "type": "classification", "target": "label"}],
               "space": f"{name}.space.yaml",
               "search": {"trials": 2, "epochs": 1, "seed": 0, "out": str(tmp_path / name), "trials_per_process": 0,
                          "baselines": "off", "ensemble": 0, "refit": False}}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(exp))
        return tmp_path / f"{name}.yaml"

    fixed = cli("search", "--config", experiment("fixed", {"fixed": "mobilenet_v3_small"}), "--no-report")
    assert fixed.exit_code == 2, fixed.output
    for fragment in ("ImageNet weights of", "cannot be reached", "weights: PATH", "weights: none", "mobilenet_v3_small"):
        assert fragment in fixed.output, fixed.output
    assert not (tmp_path / "fixed" / "trials").exists()  # refused before any trial
    sampled = cli("search", "--config", experiment("sampled", {"choice": ["conv", "mobilenet_v3_small", "resnet50"]}),
                  "--no-report")
    assert sampled.exit_code == 0, sampled.output
    start = sampled.output[:sampled.output.index("trial ")]
    assert "image.backbone without mobilenet_v3_small, resnet50" in start, start  # said once, in the start-up lines
    assert sampled.output.count("without mobilenet_v3_small") == 1
    trials = json.loads((tmp_path / "sampled" / "trials.json").read_text())["trials"]
    assert trials and all(t["params"]["image.backbone"] == "conv" and t["state"] == "complete" for t in trials)
