"""Export a trial: SavedModel with a raw-input signature, model.keras, and a manifest.

The SavedModel's ``serving_default`` takes the named raw inputs and returns
each task's post-processed outputs (``<task>.<output>``); it loads and runs
with plain TensorFlow, no automtl import.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import keras
import tensorflow as tf

import automtl
from automtl.api import InputEncoder, Task
from automtl.trial import TrialRecord
from automtl.model import layers as _layers  # noqa: F401  (registers custom layers for loading)

TF_DTYPES = {"string": tf.string, "float32": tf.float32, "int32": tf.int32, "int64": tf.int64, "uint8": tf.uint8}


class ServingModule(tf.Module):
    """Wraps the Keras model plus each task's in-graph post-processing."""

    def __init__(self, model: keras.Model, tasks: Sequence[Task]) -> None:
        super().__init__()
        self.model = model
        self._tasks = list(tasks)

    def serve(self, **inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        raw = self.model(inputs, training=False)
        outputs = {}
        for task in self._tasks:
            for key, value in task.postprocess_with_inputs(raw[task.name], inputs).items():
                outputs[f"{task.name}.{key}"] = value
        return outputs


def input_signature(encoders: Sequence[InputEncoder]) -> dict[str, tf.TensorSpec]:
    return {
        s.name: tf.TensorSpec([None, *s.shape], TF_DTYPES[s.dtype], name=s.name)
        for enc in encoders for s in enc.specs()
    }


def versions() -> dict[str, str]:
    out = {"automtl": automtl.__version__}
    for dist in ("tensorflow", "keras", "numpy", "optuna", "keras-tuner"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def export_trial(
    model_path: Path,
    encoders: Sequence[InputEncoder],
    tasks: Sequence[Task],
    record: TrialRecord,
    out_dir: Path,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``out_dir`` atomically: a crash never leaves a half-written export."""
    for plugin in (*encoders, *tasks):
        plugin.register_keras_objects()  # custom layers of plugins, e.g. after a resumed search
    model = keras.saving.load_model(model_path)
    module = ServingModule(model, tasks)
    concrete = tf.function(module.serve).get_concrete_function(**input_signature(encoders))
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        tf.saved_model.save(module, str(tmp / "saved_model"), signatures={"serving_default": concrete})
        shutil.copy2(model_path, tmp / "model.keras")
        outputs = sorted(concrete.structured_outputs)
        manifest = {
            "format": "automtl-export/1",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "signature": "serving_default",
            "inputs": [s.describe() | {"input": enc.name, "type": _type_of(enc)} for enc in encoders for s in enc.specs()],
            "tasks": [
                {"name": t.name, "type": _type_of(t), "primary_metric": t.primary_metric,
                 "outputs": [o for o in outputs if o.startswith(f"{t.name}.")], **t.describe()}
                for t in tasks
            ],
            "trial": {"number": record.number, "score": record.score, "params": record.params,
                      "metrics": record.metrics, "device": record.device, "best_epoch": record.best_epoch},
            "versions": versions(),
            **(extra or {}),
        }
        (tmp / "automtl.json").write_text(json.dumps(manifest, indent=2, default=str))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _type_of(plugin: Any) -> str:
    return getattr(plugin, "type_name", None) or type(plugin).__name__
