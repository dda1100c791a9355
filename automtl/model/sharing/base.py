"""What a sharing scheme is given (a :class:`Trunk` of copyable levels) and what it returns (:class:`Shared`).

A model is: inputs -> what always stays shared (scaling, embeddings: the
encoders' stems) -> the trunk's *levels* -> task heads. A level is one
copyable layer: a conv stage or a text encoder layer of an input that offers
its blocks (:class:`automtl.api.EncoderBlocks`), or a dense trunk layer. After
the encoder levels the *join* turns each encoder's last map into its views
(pooling) and concatenates the vector views; the dense levels then act on
the ``vector`` view.

A scheme decides, level by level, whether there is one copy for every task
(shared), one per task, or experts mixed by gates; it never needs to know
what a level holds. It walks the trunk with :meth:`Trunk.run`, which builds a
fresh copy of each level it passes, and combines per-key tensors of streams
with the helpers here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar, Sequence

from automtl.core.params import Declared
from automtl.core.trial_params import TrialParams


@dataclass(frozen=True)
class Part:
    """One block of a level: it transforms the stream entry ``key`` (an input's name, or ``vector``).

    ``make(name)`` returns a fresh Keras layer named ``name``; it is called with
    ``x`` alone, or with ``[x, *context]`` when the encoder gave context tensors
    (a token mask), which stay shared.
    """

    key: str
    name: str
    make: Callable[[str], Any]
    context: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Level:
    """Blocks at one depth of the trunk (one per input that offers a block at this depth, or the dense layer)."""

    parts: tuple[Part, ...]

    @property
    def name(self) -> str:
        return "+".join(p.name for p in self.parts)


@dataclass
class Stream:
    """One path's tensors between levels: by input name before the join, by view name after it."""

    tensors: dict[str, Any]
    joined: bool = False


#: ``join(tensors, suffix) -> views``: each encoder's last map to its views, vector views concatenated.
Join = Callable[[dict[str, Any], str], dict[str, Any]]


@dataclass
class Trunk:
    """The levels a sharing scheme may share, copy or mix, and how to walk them.

    ``levels[:join_at]`` are encoder levels, ``levels[join_at:]`` dense layers
    on the ``vector`` view. ``made`` records every copy :meth:`run` builds:
    ``made[level index][copy suffix][key] -> layer`` (soft sharing pairs the
    copies' kernels through it; GradNorm measures on the last level's copies).
    """

    start: dict[str, Any]
    levels: list[Level]
    join_at: int
    join: Join
    #: ``dense_levels(count, units)``: dense levels made again (more of them, or another width); None
    #: when no task reads the vector view (then there are no dense levels)
    dense_levels: Callable[[int, int | None], list[Level]] | None = None
    made: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        """Number of levels: encoder blocks plus dense layers (``branch.at`` counts these)."""
        return len(self.levels)

    def begin(self) -> Stream:
        return Stream(dict(self.start))

    def run(self, stream: Stream, start: int, stop: int, tag: str = "") -> Stream:
        """Build fresh copies of levels ``[start, stop)`` on ``stream``; ``tag`` names the copies
        (``""``: the one shared copy; layer names get ``-<tag>`` otherwise). The join happens
        where it belongs, once per stream."""
        tensors, joined = dict(stream.tensors), stream.joined
        suffix = f"-{tag}" if tag else ""
        for k in range(start, stop):
            if k == self.join_at and not joined:
                tensors, joined = self.join(tensors, suffix), True
            made = self.made.setdefault(k, {}).setdefault(suffix, {})
            for part in self.levels[k].parts:
                if part.key not in tensors:
                    raise ValueError(f"trunk level '{part.name}' needs '{part.key}', which this stream lacks")
                layer = part.make(part.name + suffix)
                made[part.key] = layer
                x = tensors[part.key]
                tensors[part.key] = layer([x, *part.context] if part.context else x)
        if stop >= len(self.levels) and self.join_at >= len(self.levels) and not joined:
            tensors, joined = self.join(tensors, suffix), True
        return Stream(tensors, joined)

    def keys(self, start: int, stop: int) -> list[str]:
        """The stream entries that levels ``[start, stop)`` change (what mixing units mix)."""
        return sorted({p.key for level in self.levels[start:stop] for p in level.parts})

    def with_min_depth(self, depth: int, units: int | None = None) -> "Trunk":
        """This trunk with at least ``depth`` levels in all (more dense levels when needed), its dense
        levels ``units`` wide when given (MMoE's ``expert_units``). Unchanged without dense levels."""
        if self.dense_levels is None:
            return self
        dense = len(self.levels) - self.join_at
        want = max(dense, depth - self.join_at)
        if units is None and want == dense:
            return self
        return replace(self, levels=self.levels[: self.join_at] + self.dense_levels(want, units), made={})

    def summary(self, name: str) -> Any:
        """A vector summarising the shared start of the trunk (the gates' input): the join of the
        stems, i.e. pooled encoder maps and the plain inputs' vectors."""
        views = self.join(dict(self.start), f"-{name}")
        if "vector" not in views:
            raise ValueError("this sharing scheme's gates need a 'vector' view, which no input offers")
        return views["vector"]

    def last_layers(self, suffixes: Sequence[str] | None = None) -> list[Any]:
        """The copies of the last level (those with these suffixes, or all)."""
        if not self.levels or len(self.levels) - 1 not in self.made:
            return []
        copies = self.made[len(self.levels) - 1]
        return [layer for s, by_key in copies.items() if suffixes is None or s in suffixes
                for layer in by_key.values()]


@dataclass
class Shared:
    """What a scheme built: each task's views, and what GradNorm and the trainer need to know.

    ``last_layers``: the layers GradNorm measures gradient norms on (the last
    level every task shares; a scheme with nothing shared there names each
    task's own copies of the last level, so each task's norm is taken on its
    own copy). ``measured_on`` says which in words (it goes to the trial's
    history). ``penalties`` are layers whose call adds a training loss
    (``add_loss``); the model threads one task's features through them so
    they run in every training step.
    """

    per_task: dict[str, dict[str, Any]]
    last_layers: list[Any] = field(default_factory=list)
    measured_on: str = ""
    penalties: list[Any] = field(default_factory=list)


class SharingScheme(Declared):
    """How tasks share the trunk's levels.

    Subclasses declare ``parameters`` (read with :meth:`value`) and implement
    :meth:`build`; they import Keras inside ``build`` so declarations stay
    light. ``views`` says which views the tasks need (a scheme may refuse
    some, naming why).
    """

    #: its part of ``space: auto`` with several tasks: its own parameters' ranges in the space file format
    #: (each applies only when this scheme is chosen); None keeps it out of the automatic space
    auto_space: ClassVar[dict[str, Any] | None] = None
    #: its place among the automatic space's choices (lowest first)
    auto_rank: ClassVar[int] = 100

    def build(self, trunk: Trunk, tasks: list[str], params: TrialParams) -> Shared:
        raise NotImplementedError


def shared_last(trunk: Trunk, level_stop: int) -> tuple[list[Any], str]:
    """GradNorm's layers when levels ``[0, level_stop)`` are shared: the last shared level, else
    (nothing shared) each task's own copy of the last level."""
    if level_stop > 0:
        layers = list(trunk.made.get(level_stop - 1, {}).get("", {}).values())
        return layers, "last shared level: " + ", ".join(l.name for l in layers)
    layers = trunk.last_layers()
    if not layers:
        return [], ""
    return layers, ("no level is shared by every task: each task's gradient norm is taken on its own copy of "
                    "the last level (" + ", ".join(l.name for l in layers) + ")")


def mix(streams: Sequence[Stream], keys: Sequence[str], combine: Callable[[str, list[Any]], list[Any]]) -> list[Stream]:
    """Streams whose entries ``keys`` are replaced by ``combine(key, [tensor of each stream])``."""
    out = [Stream(dict(s.tensors), s.joined) for s in streams]
    for key in keys:
        mixed = combine(key, [s.tensors[key] for s in streams])
        for s, tensor in zip(out, mixed):
            s.tensors[key] = tensor
    return out


def pooled_summary(stream: Stream, name: str) -> Any:
    """One vector per example from a stream's tensors (global average over positions), for gates."""
    import keras

    from automtl.model.layers import GlobalSummary

    tensors = [stream.tensors[k] for k in sorted(stream.tensors)]
    return GlobalSummary(name=name)(tensors) if tensors else keras.ops.zeros((1,))


def gated(gate_input: Any, experts: Sequence[Stream], name: str) -> Stream:
    """The softmax-gated mixture of expert streams (every entry mixed), the gate a Dense on ``gate_input``."""
    import keras

    from automtl.model.layers import GatedMixture

    gate = keras.layers.Dense(len(experts), name=f"gate_{name}")(gate_input)
    keys = sorted(experts[0].tensors)
    out = {k: GatedMixture(name=f"mixture_{name}" + (f"_{k}" if len(keys) > 1 else ""))(
        [gate, *[e.tensors[k] for e in experts]]) for k in keys}
    return Stream(out, experts[0].joined)
