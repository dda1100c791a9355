"""Build one trial's multi-head Keras model from the inputs, tasks and parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import keras

from automtl.devices import float16_compute
from automtl.errors import TrialFailed
from automtl import registry
from automtl.trial import TrialParams

if TYPE_CHECKING:  # the plugin types, for annotations only: the API imports model's bricks
    from automtl.api import InputEncoder, Task


@dataclass
class Assembled:
    """The model plus which variables belong to which head (alternating training needs it)."""

    model: keras.Model
    heads: dict[str, keras.Model]
    last_shared_layers: list[str] = field(default_factory=list)

    def shared_variables(self) -> list[Any]:
        head_ids = {id(v) for h in self.heads.values() for v in h.trainable_variables}
        return [v for v in self.model.trainable_variables if id(v) not in head_ids]

    def last_shared_variables(self) -> list[Any]:
        """Kernels of the last shared layers (all shared variables if there are none)."""
        found = [self.model.get_layer(n).kernel for n in self.last_shared_layers]
        return found or self.shared_variables()


def build_model(encoders: Sequence[InputEncoder], tasks: Sequence[Task], params: TrialParams) -> Assembled:
    """Encoders give views; "vector" views are concatenated and go through the sharing
    scheme (one feature tensor per task); a task whose ``view`` is "spatial" or
    "sequence" gets that view from the encoder offering it. Each head is its own
    sub-model named ``head_<task>``.
    """
    inputs: dict[str, Any] = {}
    vectors, other_views = [], {}
    for enc in encoders:
        own = {}
        for spec in enc.specs():
            own[spec.name] = inputs[spec.name] = keras.Input(shape=spec.shape, dtype=spec.dtype, name=spec.name)
        views = enc.build(own, params)
        if "vector" in views:
            vectors.append(views["vector"])
        for view, tensor in views.items():
            if view != "vector":
                if view in other_views:
                    raise TrialFailed(f"two inputs offer a '{view}' view; a task cannot choose between them")
                other_views[view] = tensor
    vector_tasks = [t.name for t in tasks if t.view == "vector"]
    per_task: dict[str, Any] = {}
    last_layers: list[str] = []
    if vector_tasks:
        if not vectors:
            raise TrialFailed("no input offers a 'vector' view for tasks " + ", ".join(vector_tasks))
        features = vectors[0] if len(vectors) == 1 else keras.layers.Concatenate(name="inputs_concat")(vectors)
        shared = registry.member("sharing", str(params.get("sharing")))().build(features, vector_tasks, params)
        per_task, last_layers = shared.per_task, shared.last_layers
    outputs, heads = {}, {}
    for task in tasks:
        if task.view != "vector" and task.view not in other_views:
            raise TrialFailed(f"task '{task.name}' needs a '{task.view}' view, which no input offers")
        feat = per_task[task.name] if task.view == "vector" else other_views[task.view]
        task.configure(params)
        head_in = keras.Input(shape=tuple(feat.shape[1:]), name=f"{task.name}_features")
        head_out = task.build_head(head_in, params.head(task.name))
        if float16_compute():  # mixed precision: outputs (and so losses and metrics) stay float32
            flat = keras.tree.flatten(head_out)
            head_out = keras.tree.pack_sequence_as(head_out, [
                keras.layers.Activation("linear", dtype="float32", name=f"{task.name}_float32{i or ''}")(t)
                for i, t in enumerate(flat)])
        head = keras.Model(head_in, head_out, name=f"head_{task.name}")
        heads[task.name] = head
        outputs[task.name] = head(feat)
    return Assembled(keras.Model(inputs, outputs, name="automtl"), heads, last_layers)
