"""Devices and precision: --device/--precision checks, mixed float16 training with float32 outputs, GPU placement."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from automtl.config import load_experiment


def rows(path):
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_device_gpu_without_a_gpu_is_a_clear_error(cli, write_experiment, tmp_path):
    result = cli("search", "--config", write_experiment(), "--device", "gpu", "--no-report")
    assert result.exit_code == 2
    assert "--device gpu: this machine has no GPU" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "trials.csv").exists()  # refused before any trial


def test_tensorflow_still_checks_the_gpu_where_the_cheap_query_cannot_tell():
    from automtl.devices import configure
    from automtl.errors import ConfigError

    with pytest.raises(ConfigError, match="--device gpu: TensorFlow sees no GPU"):
        configure("gpu")


@pytest.mark.parametrize("env, nodes, smi, device, precision, refused", [
    ({"CUDA_VISIBLE_DEVICES": "-1"}, ["/dev/nvidia0"], "9.0\n", "gpu", "auto", "--device gpu: this machine has no GPU"),
    ({}, [], None, "gpu", "auto", "--device gpu: this machine has no GPU"),
    ({}, [], None, "auto", "mixed", "--precision mixed needs a GPU of compute capability 7.0 or newer (found: no GPU)"),
    ({}, ["/dev/nvidia0"], "6.1\n", "auto", "mixed", "(found: 6.1)"),
    ({}, ["/dev/nvidia0"], "6.1\n8.0\n", "gpu", "mixed", "(found: 6.1, 8.0)"),
    ({}, ["/dev/nvidia0"], "8.0\n", "gpu", "mixed", None),
    ({}, ["/dev/nvidia0"], None, "gpu", "mixed", None),  # no nvidia-smi: TensorFlow decides later
    ({"CUDA_VISIBLE_DEVICES": "1"}, ["/dev/nvidia0", "/dev/nvidia1"], "8.0\n8.0\n", "gpu", "auto", None),
])
def test_device_and_precision_are_refused_from_a_cheap_query(monkeypatch, env, nodes, smi, device, precision, refused):
    """Issue 31: --device gpu without a GPU took 54.7 s under load, --precision mixed 34.3 s (TensorFlow loaded
    first); now the driver's device files and nvidia-smi answer before TensorFlow loads."""
    import subprocess

    from automtl import devices
    from automtl.errors import ConfigError

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(devices.sys, "platform", "linux")
    monkeypatch.setattr(devices.glob, "glob", lambda pattern: list(nodes) if "nvidia" in pattern else [])
    monkeypatch.setattr(devices.os.path, "exists", lambda p: False)
    monkeypatch.setattr(devices.shutil, "which", lambda name: "/usr/bin/nvidia-smi" if smi is not None else None)
    monkeypatch.setattr(devices.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, smi, ""))
    if refused is None:
        devices.check_devices(device, precision)
    else:
        with pytest.raises(ConfigError) as caught:
            devices.check_devices(device, precision)
        assert refused in str(caught.value)


def test_mixed_precision_without_a_capable_gpu_is_refused(cli, write_experiment):
    result = cli("search", "--config", write_experiment(), "--precision", "mixed", "--no-report")
    assert result.exit_code == 2
    assert "--precision mixed needs a GPU of compute capability 7.0" in result.output


def test_bad_device_in_the_experiment_file_names_the_key(cli, write_experiment, tmp_path):
    exp = write_experiment(search={"trials": 1, "device": "tpu", "out": str(tmp_path / "run")})
    result = cli("search", "--config", exp)
    assert result.exit_code == 2
    assert "search.device" in result.output and "tpu" in result.output


@pytest.mark.e2e
def test_cpu_device_is_recorded_in_trials_and_manifest(cli, write_experiment, tmp_path):
    result = cli("search", "--config", write_experiment(), "--device", "cpu", "--precision", "float32", "--no-report")
    assert result.exit_code == 0, result.output
    assert "device CPU, float32" in " ".join(result.output.split())  # the header (wrapped at 80 columns)
    assert {r["device"] for r in rows(tmp_path / "run" / "trials.csv")} == {"cpu"}
    manifest = json.loads((tmp_path / "run" / "best" / "automtl.json").read_text())
    assert manifest["trial"]["device"] == "cpu"


class _Handle:
    def __init__(self, number, params):
        self.number, self.params, self.reports = number, params, []

    def report(self, epoch, value):
        self.reports.append(value)


@pytest.mark.e2e
@pytest.mark.parametrize("params", [
    {"strategy": "joint", "trunk.units": 16, "sharing": "mmoe", "weighting": "uncertainty"},
    {"strategy": "joint", "trunk.units": 16, "weighting": "pcgrad"},  # per-task gradients, scaled and unscaled
    {"strategy": "alternating", "trunk.units": 16},
])
def test_mixed_precision_trains_in_float16_with_float32_outputs(write_experiment, tmp_path, params):
    """Runs on the CPU (slowly, but the same graph): float16 layers, float32 heads, loss scaling, finite scores."""
    import keras

    from automtl.devices import DevicePlan, set_precision
    from automtl.data.prepare import instantiate, prepare
    from automtl.training.runner import TrialRunner

    exp = load_experiment(write_experiment(), {"epochs": 4})
    encoders, tasks = instantiate(exp)
    runner = TrialRunner(prepare(exp, encoders, tasks), tmp_path / "run")
    runner.plan = DevicePlan("cpu", "mixed_float16")
    try:
        handle = _Handle(0, params)
        outcome = runner(handle)
        model = keras.saving.load_model(tmp_path / "run" / "trials" / "00000" / "model.keras")
    finally:
        set_precision("float32")
    assert outcome.attrs["precision"] == "mixed_float16"
    assert all(np.isfinite(handle.reports)) and 0 < outcome.score <= 1
    assert handle.reports[-1] > handle.reports[0]  # it learned
    assert {name: t.dtype for name, t in model.output.items()} == {"price": "float32", "kind": "float32"}
    policies = {layer.dtype_policy.name for layer in model.layers if layer.weights}
    assert "mixed_float16" in policies
    assert all(w.dtype == "float32" for w in model.weights)  # variables stay float32


def test_loss_scale_skips_an_overflowing_step_and_halves_the_scale():
    import tensorflow as tf

    from automtl.training.loss_scale import DynamicLossScale
    from automtl.training.optimizer import FusedAdam

    var = tf.Variable([1.0, 2.0])
    opt = FusedAdam(0.1, [var])
    scaler = DynamicLossScale(initial_scale=2.0**15, growth_interval=2)
    # float16 compute whose scaled gradient overflows: the step is skipped, the scale halves
    with tf.GradientTape() as tape:
        big = tf.reduce_sum(tf.cast(var, tf.float16) * tf.constant(60000.0, tf.float16))
        loss = tf.cast(big, tf.float32)
    scaler.minimize(opt, loss, tape, [var])
    assert var.numpy().tolist() == [1.0, 2.0]
    assert float(scaler.scale.numpy()) == 2.0**14
    for _ in range(2):  # finite steps apply the update; after growth_interval of them the scale doubles
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(var))
        scaler.minimize(opt, loss, tape, [var])
    assert var.numpy()[0] < 1.0
    assert float(scaler.scale.numpy()) == 2.0**15


@pytest.mark.gpu
def test_trial_training_runs_on_the_gpu(write_experiment, tmp_path):
    """With a GPU: the trial allocates GPU memory while training, its variables and ops are placed on the GPU."""
    import keras
    import tensorflow as tf

    from automtl.devices import configure
    from automtl.data.prepare import instantiate, prepare
    from automtl.training.runner import TrialRunner
    from automtl.training.trainer import to_tensors

    exp = load_experiment(write_experiment(), {"epochs": 3, "device": "gpu"})
    plan = configure("gpu", "auto")
    assert plan.device == "gpu"
    encoders, tasks = instantiate(exp)
    runner = TrialRunner(prepare(exp, encoders, tasks), tmp_path / "run")
    tf.config.experimental.reset_memory_stats("GPU:0")
    outcome = runner(_Handle(0, {"strategy": "joint", "trunk.units": 32}))
    assert outcome.device.startswith("gpu:")
    assert tf.config.experimental.get_memory_info("GPU:0")["peak"] > 0  # training allocated GPU memory
    model = keras.saving.load_model(tmp_path / "run" / "trials" / "00000" / "model.keras")
    assert all("GPU" in v.value.device for v in model.weights)
    out = model(to_tensors(runner.prepared.valid.x), training=True)  # a training-mode pass, as in a step
    assert all("GPU" in t.device for t in tf.nest.flatten(out))


@pytest.mark.gpu
def test_search_on_gpu_records_the_gpu(cli, write_experiment, tmp_path):
    result = cli("search", "--config", write_experiment(), "--device", "gpu", "--no-report")
    assert result.exit_code == 0, result.output
    assert all(r["device"].startswith("gpu:") for r in rows(tmp_path / "run" / "trials.csv"))
    manifest = json.loads((tmp_path / "run" / "best" / "automtl.json").read_text())
    assert manifest["trial"]["device"].startswith("gpu:")
