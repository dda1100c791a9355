"""Export an ensemble: one SavedModel holding its member models, with the same signature as ``best/``.

``serving_default`` takes the same named raw inputs and returns the same
``<task>.<output>`` keys as a single trial's export: each member runs, each
task combines the members' raw outputs with its ``combine`` hook and then
post-processes them as one model would. A member picked several times is
stored once; its weight carries the multiplicity. Each task has its own members
and weights (see :class:`automtl.rundir.ensemble.EnsembleResult`); every member
model runs once per call. Plain TensorFlow serves it.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf

from automtl.api import InputEncoder, Task
from automtl.core.trial import trial_dir
from automtl.export.savedmodel import _type_of, input_signature, versions
from automtl.model import layers as _layers  # noqa: F401  (registers custom layers for loading)
from automtl.rundir.ensemble import EnsembleResult


class EnsembleModule(tf.Module):
    """The members' Keras models, their weights, and each task's combine and post-processing."""

    def __init__(self, models: Sequence[keras.Model], tasks: Sequence[Task],
                 per_task: Mapping[str, Sequence[tuple[int, float]]]) -> None:
        """``per_task``: for each task, ``(index into models, weight)`` of its members."""
        super().__init__()
        self.members = list(models)
        self._tasks = list(tasks)
        self._per_task = {t: tuple((int(i), float(w)) for i, w in ms) for t, ms in per_task.items()}

    def raw(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Each task's combined raw output (each member model runs once)."""
        raws = [m(dict(inputs), training=False) for m in self.members]
        out = {}
        for task in self._tasks:
            members = self._per_task[task.name]
            if len(members) == 1:
                out[task.name] = raws[members[0][0]][task.name]
            else:
                out[task.name] = task.combine([raws[i][task.name] for i, _ in members], [w for _, w in members])
        return out

    def serve(self, **inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        combined = self.raw(inputs)
        outputs = {}
        for task in self._tasks:
            for key, value in task.postprocess_with_inputs(combined[task.name], inputs).items():
                outputs[f"{task.name}.{key}"] = value
        return outputs


def load_members(run_dir: Path, ensemble: EnsembleResult, encoders: Sequence[InputEncoder],
                 tasks: Sequence[Task]) -> EnsembleModule:
    """The ensemble's module, its members loaded from ``trials/<n>/model.keras``."""
    for plugin in (*encoders, *tasks):
        plugin.register_keras_objects()
    numbers = [int(m["trial"]) for m in ensemble.members]
    models = [keras.saving.load_model(trial_dir(run_dir, n) / "model.keras") for n in numbers]
    per_task = {t: [(numbers.index(int(m["trial"])), float(m["weight"])) for m in ms] for t, ms in ensemble.tasks.items()}
    return EnsembleModule(models, tasks, per_task)


def export_ensemble(run_dir: Path, ensemble: EnsembleResult, encoders: Sequence[InputEncoder], tasks: Sequence[Task],
                    out_dir: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``out_dir`` (``RUN_DIR/ensemble``) atomically: ``saved_model/``, ``members/trial_<n>.keras``
    and ``automtl.json`` (the manifest of ``best/`` plus the members and their weights)."""
    run_dir = Path(run_dir)
    module = load_members(run_dir, ensemble, encoders, tasks)
    concrete = tf.function(module.serve).get_concrete_function(**input_signature(encoders))
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        tf.saved_model.save(module, str(tmp / "saved_model"), signatures={"serving_default": concrete})
        (tmp / "members").mkdir()
        for m in ensemble.members:
            shutil.copy2(trial_dir(run_dir, int(m["trial"])) / "model.keras", tmp / "members" / f"trial_{int(m['trial']):05d}.keras")
        outputs = sorted(concrete.structured_outputs)
        manifest = {
            "format": "automtl-export/1",
            "kind": "ensemble",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "signature": "serving_default",
            "inputs": [s.describe() | {"input": enc.name, "type": _type_of(enc)} for enc in encoders for s in enc.specs()],
            "tasks": [
                {"name": t.name, "type": _type_of(t), "primary_metric": t.primary_metric,
                 "outputs": [o for o in outputs if o.startswith(f"{t.name}.")], **t.describe()}
                for t in tasks
            ],
            "parameters": int(sum(m.count_params() for m in module.members)),
            "ensemble": {
                "method": "greedy ensemble selection with replacement (Caruana et al., 2004), per task, on the "
                          "validation rows",
                "members": [{**m, "model": f"members/trial_{int(m['trial']):05d}.keras"} for m in ensemble.members],
                **{k: v for k, v in ensemble.to_json().items() if k != "members"},
            },
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


def read_ensemble(folder: Path) -> EnsembleResult:
    """The ensemble recorded in an exported ensemble's manifest."""
    doc = json.loads((Path(folder) / "automtl.json").read_text())["ensemble"]
    return EnsembleResult.from_json({**doc, "members": [{k: v for k, v in m.items() if k != "model"}
                                                        for m in doc["members"]]})
