"""Build one trial's multi-head Keras model from the inputs, tasks and parameters.

inputs -> each encoder's stem (always shared) -> the trunk's levels (encoder
blocks, then dense layers on the vector view), shared, copied or mixed as the
trial's ``sharing`` scheme says -> one head per task.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import keras

from automtl.core import registry
from automtl.core.trial_params import TrialParams
from automtl.devices import float16_compute
from automtl.errors import TrialFailed
from automtl.model.layers import DenseLevel
from automtl.model.sharing.base import Level, Part, Trunk
from automtl.model.tabm import MEMBERS, EnsembleDense, MemberAdapter, MemberAverage

if TYPE_CHECKING:  # the plugin types, for annotations only: the API imports model's bricks
    from automtl.plugin_base import InputEncoder, Task


@dataclass
class Assembled:
    """The model plus which variables belong to which task (alternating training and GradNorm need it)."""

    model: keras.Model
    heads: dict[str, keras.Model]
    #: the layers GradNorm measures on (see :class:`~automtl.model.sharing.base.Shared`)
    last_shared_layers: list[Any] = field(default_factory=list)
    #: which layers those are, in words (recorded in the trial's history when GradNorm runs)
    measured_on: str = ""
    #: a TabM trunk's per-member outputs ``[batch, k, ...]`` by task (empty for a plain trunk)
    members: dict[str, Any] = field(default_factory=dict)
    _paths: dict[str, keras.Model] = field(default_factory=dict, repr=False)
    _training: keras.Model | None = field(default=None, repr=False)

    @property
    def training_model(self) -> keras.Model:
        """What the strategies train: the model, plus each task's member outputs with a TabM trunk
        (each member learns from its own loss; the model itself serves their average)."""
        if not self.members:
            return self.model
        if self._training is None:
            outputs = {**self.model.output, **{MEMBERS.format(t): m for t, m in self.members.items()}}
            self._training = keras.Model(self.model.inputs, outputs, name="automtl_members")
        return self._training

    def _path(self, task: str) -> keras.Model:
        if task not in self._paths:
            self._paths[task] = keras.Model(self.model.inputs, self.model.output[task])
        return self._paths[task]

    def task_variables(self, task: str) -> list[Any]:
        """The trainable variables task ``task``'s output depends on: its head, the levels on its
        path (shared or its own copies), mixing units, and the inputs' trainable layers."""
        return list(self._path(task).trainable_variables)

    def task_weights(self, task: str) -> list[Any]:
        """Every weight on task ``task``'s path, trainable or not (batch normalisation statistics too)."""
        return list(self._path(task).weights)

    def own_path_tasks(self) -> list[str]:
        """Tasks whose path shares no trainable variable with another task's (every task under
        ``none`` or ``soft`` sharing without a trainable shared input layer): each is a separate model."""
        if len(self.heads) < 2:
            return []
        shared = {id(v) for v in self.shared_variables()}
        return [t for t in self.heads if not any(id(v) in shared for v in self.task_variables(t))]

    def shared_variables(self) -> list[Any]:
        """Variables on more than one task's path (with one task: all but its head)."""
        tasks = list(self.heads)
        if len(tasks) == 1:
            head = {id(v) for v in self.heads[tasks[0]].trainable_variables}
            return [v for v in self.model.trainable_variables if id(v) not in head]
        count: dict[int, int] = {}
        for t in tasks:
            for v in self.task_variables(t):
                count[id(v)] = count.get(id(v), 0) + 1
        return [v for v in self.model.trainable_variables if count.get(id(v), 0) > 1]

    def lr_scales(self, variables: list[Any]) -> list[float]:
        """Each variable's learning-rate multiplier (see :mod:`automtl.model.lr_scale`; 1.0 unmarked)."""
        from automtl.model.lr_scale import variable_scales

        scales = variable_scales(self.model)
        return [scales.get(id(v), 1.0) for v in variables]

    def last_shared_variables(self) -> list[Any]:
        """Kernels of the layers GradNorm measures on (all shared variables if the scheme names none)."""
        found = [w for layer in self.last_shared_layers for w in layer.trainable_weights if len(w.shape) >= 2]
        if found:
            return found
        self.measured_on = "every variable shared by several tasks (the sharing scheme names no last level)"
        return self.shared_variables()


def build_model(encoders: Sequence[InputEncoder], tasks: Sequence[Task], params: TrialParams) -> Assembled:
    """Encoders give either their blocks (:meth:`InputEncoder.blocks`: the scheme may copy them)
    or finished views (:meth:`InputEncoder.build`: shared by every task). Each task reads its
    ``view`` of its own stream; each head is its own sub-model named ``head_<task>``.
    """
    inputs: dict[str, Any] = {}
    start: dict[str, Any] = {}
    encoder_levels: list[list[Part]] = []
    finishers: dict[str, Any] = {}
    fixed: dict[str, dict[str, Any]] = {}  # views of encoders without blocks: shared as they are
    order = [enc.name for enc in encoders]
    for enc in encoders:
        own = {}
        for spec in enc.specs():
            own[spec.name] = inputs[spec.name] = keras.Input(shape=spec.shape, dtype=spec.dtype, name=spec.name)
        offered = enc.blocks(own, params)
        if offered is None:
            fixed[enc.name] = enc.build(own, params)
            continue
        start[enc.name] = offered.stem
        finishers[enc.name] = offered.views
        for i, block in enumerate(offered.blocks):
            if i == len(encoder_levels):
                encoder_levels.append([])
            encoder_levels[i].append(Part(enc.name, block.name, block.make, tuple(offered.context)))
    vector_tasks = [t.name for t in tasks if t.view == "vector"]

    def join(tensors: dict[str, Any], suffix: str) -> dict[str, Any]:
        vectors, views = [], {}
        for name in order:
            out = finishers[name](tensors[name], suffix) if name in finishers else fixed[name]
            for view, tensor in out.items():
                if view == "vector":
                    vectors.append(tensor)
                elif view in views:
                    raise TrialFailed(f"two inputs offer a '{view}' view; a task cannot choose between them")
                else:
                    views[view] = tensor
        if vectors:
            views["vector"] = vectors[0] if len(vectors) == 1 else keras.layers.Concatenate(
                name=f"inputs_concat{suffix}")(vectors)
        elif vector_tasks:
            raise TrialFailed("no input offers a 'vector' view for tasks " + ", ".join(vector_tasks))
        return views

    k = params.tabm_members

    def dense_levels(count: int, units: int | None = None) -> list[Level]:
        width = int(units or params.trunk_units)
        if k:  # TabM: the first level spreads the row over the k members (random-sign adapters)
            return [Level((Part("vector", f"trunk_dense{i}", functools.partial(
                _tabm_level, width, k, params.dropout, params.l2, params.norm, i == 0)),)) for i in range(count)]
        make = functools.partial(_dense_level, width, params.dropout, params.l2, params.norm)
        return [Level((Part("vector", f"trunk_dense{i}", make),)) for i in range(count)]

    levels = [Level(tuple(parts)) for parts in encoder_levels]
    trunk = Trunk(start, levels + (dense_levels(params.trunk_depth) if vector_tasks else []), len(levels), join,
                  dense_levels if vector_tasks else None)
    scheme = registry.member("sharing", str(params.get("sharing")))
    try:
        shared = scheme().build(trunk, [t.name for t in tasks], params)
    except ValueError as exc:
        raise TrialFailed(f"sharing '{params.get('sharing')}': {exc}") from None
    outputs, heads, members = {}, {}, {}
    for task in tasks:
        views = shared.per_task[task.name]
        if task.view not in views:
            raise TrialFailed(f"task '{task.name}' needs a '{task.view}' view, which no input offers")
        feat = views[task.view]
        if task is tasks[0]:
            for layer in shared.penalties:  # on a path every training step runs
                feat = layer(feat)
        task.configure(params)
        average = _member_average(task, k) if k and task.view == "vector" else None
        if average is not None:  # one input adapter per member makes the head's shared weights k heads
            feat = MemberAdapter(k, first=len(feat.shape) == 2, name=f"tabm_adapter_{task.name}")(feat)
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
        if average is not None:
            members[task.name] = outputs[task.name]
            outputs[task.name] = MemberAverage(average, name=f"tabm_average_{task.name}")(members[task.name])
    return Assembled(keras.Model(inputs, outputs, name="automtl"), heads, shared.last_layers, shared.measured_on,
                     members)


def _dense_level(units: int, dropout: float, l2: float, norm: str, name: str) -> DenseLevel:
    return DenseLevel(units, dropout, l2, norm, name=name)


def _tabm_level(units: int, k: int, dropout: float, l2: float, norm: str, first: bool, name: str) -> EnsembleDense:
    return EnsembleDense(units, k, dropout, l2, norm, first=first, name=name)


def _member_average(task: "Task", k: int) -> str:
    """How ``task``'s member predictions average; a task that cannot average them fails the trial."""
    how = task.member_average()
    if how is None:
        raise TrialFailed(f"trunk.kind 'tabm' averages {k} member predictions per task, and task '{task.name}' "
                          f"({type(task).__name__}) declares no member_average(); use trunk.kind 'mlp'")
    return how
