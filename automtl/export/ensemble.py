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

import json
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf

from automtl.plugin_base import InputEncoder, Task
from automtl.core.trial import trial_dir
from automtl.errors import AutomtlError
from automtl.export.formats.portable import first_rows
from automtl.export.savedmodel import (input_signature, serving_manifest, serving_version, versions, write_manifest,
                                       write_serving_files)
from automtl.model import layers as _layers  # noqa: F401  (registers custom layers for loading)
from automtl.export.signatures import PORTABLE, Portable, portable_raw, shared_portable
from automtl.rundir.ensemble import EnsembleResult
from automtl.rundir.outdir import atomic_folder, check_out


class EnsembleModule(tf.Module):
    """The members' Keras models, their weights, and each task's combine and post-processing."""

    def __init__(self, models: Sequence[keras.Model], tasks: Sequence[Task],
                 per_task: Mapping[str, Sequence[tuple[int, float]]],
                 encoders: Sequence[InputEncoder] | None = None) -> None:
        """``per_task``: for each task, ``(index into models, weight)`` of its members;
        ``encoders``: to build the ``portable`` signature (ONNX, LiteRT) as well."""
        super().__init__()
        self.members = list(models)
        self._tasks = list(tasks)
        self._per_task = {t: tuple((int(i), float(w)) for i, w in ms) for t, ms in per_task.items()}
        self._specs = input_signature(encoders) if encoders is not None else None
        self._member_parts = shared_portable(self.members, encoders) if encoders is not None else []
        self.portable_parts = (self._member_parts[0] if self._member_parts
                               else Portable(reason="built without its input plugins"))

    def combined(self, raws: Sequence[Mapping[str, tf.Tensor]]) -> dict[str, tf.Tensor]:
        """Each task's raw output combined over its members (``raws``: one per member model)."""
        out = {}
        for task in self._tasks:
            members = self._per_task[task.name]
            if len(members) == 1:
                out[task.name] = raws[members[0][0]][task.name]
            else:
                out[task.name] = task.combine([raws[i][task.name] for i, _ in members], [w for _, w in members])
        return out

    def raw(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Each task's combined raw output (each member model runs once)."""
        return self.combined([m(dict(inputs), training=False) for m in self.members])

    def serve(self, **inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        combined = self.raw(inputs)
        outputs = {}
        for task in self._tasks:
            for key, value in task.postprocess_with_inputs(combined[task.name], inputs).items():
                outputs[f"{task.name}.{key}"] = value
        return outputs

    def _portable(self, **inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        raws = [portable_raw(m, parts, inputs) for m, parts in zip(self.members, self._member_parts)]
        combined = self.combined(raws)
        return {f"{t.name}.{k}": v for t in self._tasks for k, v in t.portable_postprocess(combined[t.name]).items()}

    def signatures(self) -> dict[str, Any]:
        """``serving_default`` and, when every member has the same portable inputs, ``portable``."""
        assert self._specs is not None, "built without its input plugins"
        sigs = {"serving_default": tf.function(self.serve).get_concrete_function(**self._specs)}
        if self.portable_parts.model is not None:
            sigs[PORTABLE] = tf.function(self._portable).get_concrete_function(**self.portable_parts.signature())
        return sigs


def load_members(run_dir: Path, ensemble: EnsembleResult, encoders: Sequence[InputEncoder],
                 tasks: Sequence[Task], portable: bool = False) -> EnsembleModule:
    """The ensemble's module, its members loaded from ``trials/<n>/model.keras``
    (``portable``: with the ``portable`` signature's pieces too)."""
    for plugin in (*encoders, *tasks):
        plugin.register_keras_objects()
    numbers = [int(m["trial"]) for m in ensemble.members]
    models = [keras.saving.load_model(trial_dir(run_dir, n) / "model.keras") for n in numbers]
    per_task = {t: [(numbers.index(int(m["trial"])), float(m["weight"])) for m in ms] for t, ms in ensemble.tasks.items()}
    return EnsembleModule(models, tasks, per_task, encoders if portable else None)


def export_ensemble(run_dir: Path, ensemble: EnsembleResult, encoders: Sequence[InputEncoder], tasks: Sequence[Task],
                    out_dir: Path, extra: dict[str, Any] | None = None, *,
                    formats: Sequence[str] = ("saved_model",), rows: Mapping[str, Any] | None = None,
                    layout: str = "plain", model_name: str = "ensemble", force: bool = False) -> Path:
    """Write ``out_dir`` (``RUN_DIR/ensemble``, or an ``export --ensemble`` folder) atomically:
    ``saved_model/``, ``members/trial_<n>.keras``, the reference preprocessing, ONNX / LiteRT on request
    (checked against the SavedModel on ``rows``) and ``automtl.json`` (the manifest of ``best/`` plus
    the members and their weights). Returns the folder written."""
    if rows is None and any(f != "saved_model" for f in formats):
        raise AutomtlError("ONNX and LiteRT exports are checked against the SavedModel on validation rows: pass rows")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    check_out(out_dir, force=force, serving=layout == "tf-serving")
    target = serving_version(out_dir, model_name) if layout == "tf-serving" else out_dir
    module = load_members(run_dir, ensemble, encoders, tasks, portable=True)
    signatures = module.signatures()
    rows = first_rows(rows) if rows is not None and len(rows) else None
    with atomic_folder(target) as tmp:
        (tmp / "members").mkdir()
        for m in ensemble.members:
            shutil.copy2(trial_dir(run_dir, int(m["trial"])) / "model.keras", tmp / "members" / f"trial_{int(m['trial']):05d}.keras")
        written = write_serving_files(tmp, module, signatures, tasks, rows, formats)
        manifest = {
            "format": "automtl-export/1",
            "kind": "ensemble",
            **serving_manifest(module, signatures, encoders, tasks, written, layout),
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
        write_manifest(tmp, manifest, layout)
    return target


def read_ensemble(folder: Path) -> EnsembleResult:
    """The ensemble recorded in an exported ensemble's manifest."""
    doc = json.loads((Path(folder) / "automtl.json").read_text())["ensemble"]
    return EnsembleResult.from_json({**doc, "members": [{k: v for k, v in m.items() if k != "model"}
                                                        for m in doc["members"]]})
