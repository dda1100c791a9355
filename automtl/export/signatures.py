"""The exported SavedModel's signatures: all tasks, one task, and the portable graph.

- ``serving_default``: the named raw inputs in, every task's post-processed
  outputs out (``<task>.<output>``);
- ``serve_<task>``: the same inputs, only that task's outputs, traced from a
  sub-model that holds only the layers that task needs (a client pays for one
  task);
- ``portable``: what ONNX and LiteRT exports are converted from: string inputs
  as int32 ids and images at their training size (each input plugin's
  :meth:`~automtl.api.InputEncoder.portable_inputs`), numeric outputs only
  (each task's :meth:`~automtl.api.Task.portable_postprocess`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import keras
import tensorflow as tf

from automtl.plugin_base import InputEncoder, PortableInput, Task

TF_DTYPES = {"string": tf.string, "float32": tf.float32, "int32": tf.int32, "int64": tf.int64, "uint8": tf.uint8}
PORTABLE = "portable"


def input_signature(encoders: Sequence[InputEncoder]) -> dict[str, tf.TensorSpec]:
    return {
        s.name: tf.TensorSpec([None, *s.shape], TF_DTYPES[s.dtype], name=s.name)
        for enc in encoders for s in enc.specs()
    }


@dataclass
class Portable:
    """The portable graph's pieces, or why there is none (``reason``)."""

    inputs: list[PortableInput] = field(default_factory=list)
    passthrough: dict[str, tf.TensorSpec] = field(default_factory=dict)
    model: keras.Model | None = None
    reason: str | None = None

    def signature(self) -> dict[str, tf.TensorSpec]:
        specs = dict(self.passthrough)
        for p in self.inputs:
            specs[p.name] = tf.TensorSpec([None, *p.shape], TF_DTYPES[p.dtype], name=p.name)
        return specs


def portable_model(model: keras.Model, encoders: Sequence[InputEncoder]) -> Portable:
    """The trained model cut after the layers that need strings or resizing, fed from numeric inputs."""
    try:
        inputs = [p for enc in encoders for p in enc.portable_inputs(model)]
    except (ValueError, KeyError) as exc:  # a layer the plugin expected is not in this model
        return Portable(reason=f"an input plugin could not describe its portable inputs: {exc}")
    specs = input_signature(encoders)
    replaced = {p.input for p in inputs}
    strings = [n for n, s in specs.items() if s.dtype == tf.string and n not in replaced]
    if strings:
        return Portable(reason=f"string input(s) {', '.join(strings)} have no portable form (their input plugin "
                               "defines no portable_inputs)")
    passthrough = {n: s for n, s in specs.items() if n not in replaced}
    by_name = {t.name: t for t in model.inputs}
    cut: dict[str, Any] = {n: by_name[n] for n in passthrough}
    for p in inputs:
        cut[p.name] = model.get_layer(p.layer).output
    try:
        with warnings.catch_warnings():  # keys of intermediate tensors differ from their names: intended
            warnings.simplefilter("ignore")
            sub = keras.Model(cut, model.output, name="automtl_portable")
    except ValueError as exc:
        return Portable(reason=f"the model still needs a raw input after the portable cut: {exc}")
    return Portable(inputs, passthrough, sub)


class ServingModule(tf.Module):
    """The Keras model plus each task's in-graph post-processing, as tf.functions to save."""

    def __init__(self, model: keras.Model, tasks: Sequence[Task], encoders: Sequence[InputEncoder]) -> None:
        super().__init__()
        self.model = model
        self._tasks = list(tasks)
        self._specs = input_signature(encoders)
        self._heads = {t.name: _task_model(model, t.name) for t in tasks}
        self.portable_parts = portable_model(model, encoders)

    def serve(self, **inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        raw = self.model(inputs, training=False)
        return self._post(raw, inputs, self._tasks)

    def _post(self, raw: dict[str, Any], inputs: dict[str, tf.Tensor], tasks: Sequence[Task]) -> dict[str, tf.Tensor]:
        outputs = {}
        for task in tasks:
            for key, value in task.postprocess_with_inputs(raw[task.name], inputs).items():
                outputs[f"{task.name}.{key}"] = value
        return outputs

    def signatures(self) -> dict[str, Any]:
        """``serving_default``, ``serve_<task>`` for each task and ``portable`` (when the model has one)."""
        sigs = {"serving_default": tf.function(self.serve).get_concrete_function(**self._specs)}
        for task in self._tasks:
            head = self._heads[task.name]

            def one(task: Task = task, head: keras.Model = head, **inputs: tf.Tensor) -> dict[str, tf.Tensor]:
                return self._post({task.name: head(inputs, training=False)}, inputs, [task])

            sigs[f"serve_{task.name}"] = tf.function(one).get_concrete_function(**self._specs)
        parts = self.portable_parts
        if parts.model is not None:
            sigs[PORTABLE] = tf.function(self._portable).get_concrete_function(**parts.signature())
        return sigs

    def _portable(self, **inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        raw = portable_raw(self.model, self.portable_parts, inputs)
        return {f"{t.name}.{k}": v for t in self._tasks for k, v in t.portable_postprocess(raw[t.name]).items()}


def portable_raw(model: keras.Model, parts: Portable, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The model's raw outputs from the portable inputs (ids one-hot encoded or cast as its layers expect)."""
    assert parts.model is not None
    feed = {n: inputs[n] for n in parts.passthrough}
    for p in parts.inputs:
        spec = model.get_layer(p.layer).output
        dtype = tf.as_dtype(spec.dtype)
        if p.feed == "one_hot":
            feed[p.name] = tf.one_hot(inputs[p.name], int(spec.shape[-1]), dtype=dtype)
        elif p.feed == "cast":
            feed[p.name] = tf.cast(inputs[p.name], dtype)
        else:
            raise ValueError(f"portable input '{p.name}': unknown feed '{p.feed}' (expected one_hot or cast)")
    return parts.model(feed, training=False)


def shared_portable(models: Sequence[keras.Model], encoders: Sequence[InputEncoder]) -> list[Portable]:
    """Each member's portable graph, when all take the same portable inputs (an ensemble's ``portable``
    signature feeds them one set); else one :class:`Portable` saying why there is none."""
    parts = [portable_model(m, encoders) for m in models]
    why = next((p.reason for p in parts if p.model is None), None)
    if why is None and any(_spec_key(p) != _spec_key(parts[0]) for p in parts[1:]):
        why = "the ensemble's members take different portable inputs"
    return [Portable(reason=why)] if why else parts


def _spec_key(parts: Portable) -> list[tuple[str, tuple, str]]:
    return sorted((n, tuple(s.shape.as_list()), s.dtype.name) for n, s in parts.signature().items())


def _task_model(model: keras.Model, task: str) -> keras.Model:
    """The layers from the inputs to one task's head: ``serve_<task>`` runs nothing else."""
    outputs = model.output
    if not isinstance(outputs, dict) or task not in outputs:
        raise ValueError(f"the model has no output named '{task}'")
    with warnings.catch_warnings():  # inputs unused by this head are kept: one request shape for every signature
        warnings.simplefilter("ignore")
        return keras.Model(model.input, outputs[task], name=f"automtl_{task}")
