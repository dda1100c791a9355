"""The base classes of task, input and reader plugins, and what their hooks exchange.

They live apart from :mod:`automtl.api` (which re-exports them, and is what plugins import)
so that the core's own modules can name these types without importing the facade that
re-exports the core: the import graph keeps no cycle, not even for annotations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import pydantic

from automtl.core.params import ParamSpec
from automtl.core.predictions import ServingSource
from automtl.core.trial_params import HeadParams, TrialParams
from automtl.data.streamed import StreamedArray
from automtl.data.table import Table
from automtl.errors import ConfigError


class Options(pydantic.BaseModel):
    """Base for a plugin's options; unknown keys are refused (typo protection)."""

    model_config = pydantic.ConfigDict(extra="forbid")


class NoOptions(Options):
    pass


def _validate_options(cls: type[Options], options: Mapping[str, Any], owner: str) -> Options:
    try:
        return cls.model_validate(dict(options))
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(options)"
            problems.append(f"option '{key}': {err['msg']}")
        raise ConfigError(f"{owner}: " + "; ".join(problems)) from None


@dataclass
class Targets:
    """A task's training targets and which examples carry a label.

    ``mask`` has the shape of the per-example loss the task returns: ``[n]``
    or ``[n, k]`` for tasks with several values per example. Missing labels
    are masked, never filled with a fake label (``y`` holds 0 there).
    """

    y: np.ndarray
    mask: np.ndarray

    def __post_init__(self) -> None:
        self.mask = self.mask.astype(np.float32)


@dataclass(frozen=True)
class Metric:
    """A metric a task can be ranked by: what users write as the task's ``metric:``.

    ``name`` is a key of :meth:`Task.evaluate`; ``direction`` says whether
    higher (``maximize``) or lower (``minimize``) is better. :meth:`Task.score`
    turns it into a higher-is-better score that the objective, pruning and
    ensemble selection combine across tasks.
    """

    name: str
    direction: str = "maximize"
    doc: str = ""

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(f"metric '{self.name}': direction must be 'maximize' or 'minimize', got {self.direction!r}")


@dataclass(frozen=True)
class InputSpec:
    """One named raw input of the model (and of the exported SavedModel)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": [None, *self.shape], **self.meta}


@dataclass(frozen=True)
class Block:
    """One copyable layer of an input encoder: a conv stage, a text encoder layer.

    ``make(name)`` returns a *fresh* Keras layer named ``name`` each time it is
    called: a sharing scheme calls it once (the block is shared by every task)
    or once per task, expert or copy (names then get ``-<tag>`` appended).
    ``name`` is the shared copy's name, unique in the model.
    """

    name: str
    make: Callable[[str], Any]


@dataclass
class EncoderBlocks:
    """What an input encoder lets the sharing scheme copy (see :meth:`InputEncoder.blocks`).

    ``stem`` is the tensor after what always stays shared (scaling, an
    embedding); ``blocks`` run on it in order, each block's layer called as
    ``layer(x)``, or ``layer([x, *context])`` when ``context`` holds tensors
    every block also needs (a token mask); ``views(x, suffix)`` turns the last
    block's output into the encoder's views (``{"vector": ..., "spatial": ...}``),
    adding ``suffix`` to the names of the layers it makes (one call per copy).
    """

    stem: Any
    blocks: Sequence[Block]
    views: Callable[[Any, str], dict[str, Any]]
    context: Sequence[Any] = ()

    def apply(self) -> dict[str, Any]:
        """Every block once, then the views: the encoder as one shared stack."""
        x = self.stem
        for block in self.blocks:
            layer = block.make(block.name)
            x = layer([x, *self.context]) if self.context else layer(x)
        return self.views(x, "")


@dataclass(frozen=True)
class PortableInput:
    """How an input enters a model exported for runtimes without TensorFlow's string and
    resizing kernels (ONNX, LiteRT).

    The output of the model layer ``layer`` (a ``StringLookup``, a ``TextVectorization``, an
    image resizing layer) is computed from a new numeric input ``name`` instead of the raw
    input ``input``: ``feed`` is ``"one_hot"`` (ids -> a one-hot vector as wide as the layer's
    output) or ``"cast"`` (the new input cast to the layer's output dtype). ``steps`` say how
    a raw value becomes the new input; the export's pure-Python ``preprocess.py`` runs them
    (operations: ``lowercase_ascii``, ``regex_replace``, ``split``, ``lookup``, ``pad``,
    ``image_size``; see :mod:`automtl.export.preprocess_ref`).
    """

    input: str
    name: str
    dtype: str
    shape: tuple[int, ...]
    layer: str
    feed: str
    steps: tuple[dict[str, Any], ...]

    def describe(self) -> dict[str, Any]:
        return {"input": self.input, "name": self.name, "dtype": self.dtype, "shape": [None, *self.shape],
                "steps": list(self.steps)}


@dataclass(frozen=True)
class Unavailable:
    """Values of a search parameter that cannot run on this machine (say, pretrained weights that
    cannot be had offline): ``why`` says so and how to fix it; ``default`` is the value the plugin
    uses when the space does not set the parameter."""

    values: tuple[Any, ...]
    why: str
    default: Any = None


class _Plugin:
    Options: ClassVar[type[Options]] = NoOptions
    #: Extra search-space parameter names this plugin reads (beyond the core ones):
    #: a tuple of names, or a mapping of name to its allowed values (a tuple of values,
    #: a :class:`ParamSpec` with bounds, default and ``per_task``, None: any value), so that
    #: a space file with a bad value is refused before any trial.
    parameters: ClassVar[tuple[str, ...] | Mapping[str, tuple[Any, ...] | ParamSpec | None]] = ()
    kind: ClassVar[str] = "plugin"
    #: The entry-point name users wrote as ``type`` (set by automtl when it creates the plugin).
    type_name: str = ""
    #: The experiment file's folder (set by automtl before ``prepare``): relative
    #: paths in a plugin's options resolve from it, like every path in that file.
    base_dir: Path = Path(".")

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.options = _validate_options(self.Options, options or {}, f"{self.kind} '{name}'")

    def register_keras_objects(self) -> None:
        """Import the modules that register this plugin's custom Keras layers and functions
        (``keras.saving.register_keras_serializable``), so that a saved ``model.keras``
        loads in a process that has built no model yet (the export after a resumed
        search). Called before automtl loads a model; the default registers nothing."""

    def auto_space(self) -> dict[str, Any]:
        """This plugin's fragment of the ``auto`` search space, in the search-space file format
        (``parameters``, ``per_task``, ``description``); an entry set to None removes a core
        parameter. The default reads the entry ``<kind>: {<type_name>: ...}`` (kind ``input`` or
        ``task``) from ``auto_space.yaml`` in the plugin's top-level package folder (``automtl spaces`` reads
        the same file without importing the plugin); no file or entry: an empty fragment.
        Override it to adapt the fragment to the plugin's options."""
        from automtl.autospace import plugin_dir, read_fragment

        return read_fragment(plugin_dir(type(self).__module__), self.kind, self.type_name) if self.type_name else {}

    def unavailable(self) -> Mapping[str, Unavailable]:
        """This plugin's parameter values that cannot run here, by parameter name; asked once
        before the first trial, after :meth:`prepare`. A search whose space fixes such a value (or
        leaves the parameter at such a default) is refused with ``why``; a space that samples it
        loses those choices, with one note in the start-up line. Default: none."""
        return {}

    def resolve_path(self, path: str | Path) -> Path:
        """A path from this plugin's options: absolute, or relative to the experiment file."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p


class Task(_Plugin):
    """One prediction target: reads its labels, builds its head, scores itself.

    Subclasses implement the abstract methods below. Loss and post-processing
    run inside TensorFlow graphs (use ``keras.ops`` or ``tensorflow``); metrics
    run on numpy arrays after each epoch.
    """

    kind = "task"
    #: Which trunk view the head needs: "vector", "spatial" or "sequence". A
    #: "sequence" view is ``[batch, tokens, channels]`` whose last channel is 1.0
    #: at real tokens and 0.0 at padding (so heads can mask without the raw input).
    view: ClassVar[str] = "vector"
    #: Name of the metric that ranks trials (a key of :meth:`evaluate`).
    primary_metric: ClassVar[str] = ""
    #: "maximize" or "minimize" for the primary metric.
    direction: ClassVar[str] = "maximize"
    #: The metrics users may choose with the task's ``metric:`` key (see :meth:`use_metric`);
    #: each a key of :meth:`evaluate`. Empty: the primary metric only.
    metrics: ClassVar[tuple[Metric, ...]] = ()
    #: What :meth:`chance_output` predicts, in a few words (shown beside its figures).
    chance_label: ClassVar[str] = "a trivial predictor"
    #: A smooth metric of :meth:`evaluate` (lower is better, e.g. log loss) that ranks
    #: outputs whose primary metric ties. Ensemble selection on a small validation split
    #: needs it: there a coarse metric (accuracy on 50 rows) ties for most candidates.
    #: None: ties stay ties.
    tiebreak_metric: ClassVar[str | None] = None
    #: True when ``y`` holds boxes that must move with their image when an input
    #: augments it (flips, shifts): ``y`` is ``[n, max_boxes, 5]`` float32 with
    #: ``xmin, ymin, xmax, ymax`` normalised to [0, 1] by the image's width and
    #: height, then the class id; rows with class id -1 are padding. The instance
    #: attribute ``boxes_input`` names the image input the boxes belong to (None:
    #: whichever image input there is).
    box_targets: ClassVar[bool] = False
    boxes_input: str | None = None

    def prepare(self, train: Table) -> None:
        """Learn what the task needs from the training split (classes, scale)."""

    def configure(self, params: TrialParams) -> None:
        """Read this trial's searched values that are not head sizes (label smoothing, say)
        before the head is built and the loss traced. The default reads nothing."""

    def targets(self, data: Table) -> Targets:
        raise NotImplementedError

    def build_head(self, features: Any, params: HeadParams) -> Any:
        """Return the head's raw output tensor, built on ``features``."""
        raise NotImplementedError

    def loss(self, y_true: Any, y_pred: Any) -> Any:
        """Per-example loss (shape of the mask), so missing labels can be masked."""
        raise NotImplementedError

    def evaluate(self, y_true: np.ndarray, mask: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        """Validation metrics over the labelled examples only."""
        raise NotImplementedError

    def score(self, metrics: Mapping[str, float]) -> float:
        """Turn the primary metric into a higher-is-better score comparable across tasks."""
        value = float(metrics[self.primary_metric])
        return value if self.direction == "maximize" else -value

    def available_metrics(self) -> tuple[Metric, ...]:
        """The metrics this task, with its options, can be ranked by (default: :attr:`metrics`,
        else the primary metric alone). Override it when the options change them (multi-label)."""
        return self.metrics or (Metric(self.primary_metric, self.direction),)

    def use_metric(self, name: str) -> None:
        """Rank this task by ``name`` from now on: automtl calls it with the task's ``metric:``
        before any data is read, so a name the task does not compute is refused up front."""
        known = {m.name: m for m in self.available_metrics()}
        if name not in known:
            raise ConfigError(f"tasks.{self.name}.metric: '{name}' is not a metric of task '{self.name}' "
                              f"({self.type_name or type(self).__name__}); choose one of: {', '.join(known)}")
        self.primary_metric = name
        self.direction = known[name].direction

    def member_average(self) -> str | None:
        """How the k member predictions of a TabM trunk (``trunk.kind: tabm``) average into one raw
        output inside the model: ``"mean"`` (raw values), ``"softmax"`` (the log of the mean softmax
        probability: logits over classes) or ``"sigmoid"`` (the logit of the mean sigmoid probability).
        None (the default): they cannot be averaged, and a TabM trial fails for this task, saying so."""
        return None

    def diagnostics(self, y_true: np.ndarray, mask: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
        """What the report plots for this task from raw outputs ``y_pred`` on the validation rows
        (``y_true`` and ``mask`` as :meth:`targets` made them), in plain numbers (JSON). The report
        draws three kinds: ``{"kind": "classes", "classes": [...], "precision": [...], "recall": [...],
        "confusion": [[...]] (rows: true class, columns: predicted; optional)}``, ``{"kind": "values",
        "targets": [...], "actual": [[...]], "predicted": [[...]]}`` (one list per target, in the
        user's units) and ``{"kind": "pr", "classes": [...], "recall": [...], "precision": [[...]]}``
        (a precision-recall curve per class). Default: nothing to plot (``{}``)."""
        return {}

    def chance_output(self) -> np.ndarray | None:
        """One example's raw head output of the trivial predictor learned in :meth:`prepare` from the
        training rows (class frequencies as logits, the training mean): every run scores it on the
        validation rows as the chance-level reference, so a user sees whether the model learned
        anything. None (the default): the task has no such reference."""
        return None

    def postprocess(self, raw: Any) -> dict[str, Any]:
        """Map raw head outputs to what users want, with TensorFlow ops (runs in the SavedModel)."""
        return {"output": raw}

    def postprocess_with_inputs(self, raw: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Like :meth:`postprocess`, with the raw serving inputs at hand (for example
        an image's size, to return boxes in its pixels). Defaults to ``postprocess(raw)``."""
        return self.postprocess(raw)

    @classmethod
    def serving_outputs(cls, entry: Mapping[str, Any], outputs: Mapping[str, np.ndarray],
                        inputs: Mapping[str, Mapping[str, Any]],
                        facts: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """For ``automtl predict``, after the SavedModel ran: this task's outputs to replace (keys
        ``<task>.<output>``), e.g. boxes given back in each image's own pixels. ``entry`` is the task's
        manifest entry (:meth:`describe` plus ``name`` and ``type``), ``inputs`` the manifest's input
        entries by name, ``facts`` what :meth:`InputEncoder.serving_arrays` said about each row, by
        input name. Default: nothing to replace."""
        return {}

    @classmethod
    def list_outputs(cls, entry: Mapping[str, Any], outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray | None]:
        """For ``automtl predict`` into a file that holds one list per row (CSV, Parquet, JSON Lines;
        not NPZ): outputs to add (a list per row, as an object array) or, mapped to None, to leave
        out (the padded arrays the lists replace). Default: none."""
        return {}

    def describe(self) -> dict[str, Any]:
        """Facts for the manifest (classes, target scale, ...). The key ``output_columns``,
        ``{output: {"prefix": "p", "names": [...]}}``, names the entries of a vector output:
        ``automtl predict`` then writes it as one column per entry, ``<task>.<prefix>.<name>``."""
        return {}

    def portable_postprocess(self, raw: Any) -> dict[str, Any]:
        """The post-processing kept in ONNX and LiteRT exports: numbers only (runtimes have
        no string kernels). Default: :meth:`postprocess` without its string outputs; a task
        whose post-processing does not convert (e.g. non-maximum suppression) returns its raw
        outputs here and says in :meth:`describe` how to decode them."""
        import tensorflow as tf

        return {k: v for k, v in self.postprocess(raw).items() if tf.as_dtype(v.dtype) != tf.string}

    def label_outputs(self) -> dict[str, tuple[str, list[str]]]:
        """String outputs that portable exports leave out, as ``{output: (id output, names)}``:
        ``output = names[id]`` (``""`` where the id is -1). The export's ``preprocess.py``
        rebuilds them with ``postprocess()``."""
        return {}

    # -- ensembles and distillation (optional hooks) ----------------------------------------
    def combine(self, raw_outputs: Sequence[Any], weights: Sequence[float]) -> Any:
        """Combine several models' raw head outputs for the same rows into one (an ensemble).

        ``weights`` are positive and sum to 1. Return a value that :meth:`evaluate`
        (as numpy) and :meth:`postprocess` (as a tensor) accept like a raw head output,
        built with TensorFlow ops: it runs inside the exported ensemble's graph and,
        eagerly on numpy arrays, during ensemble selection. Working on raw outputs keeps
        one metric and one post-processing for single models and ensembles alike.
        The default cannot combine: an ensemble then serves this task from one member
        (its heaviest) and says so.
        """
        raise NotImplementedError(f"task type {type(self).__name__} defines no combine()")

    def distill_targets(self, teacher_raw: np.ndarray, temperature: float) -> Targets | None:
        """Soft targets for a student from a teacher's raw outputs (numpy, one row per example).

        ``mask`` says where a soft target exists (shape of the per-example loss). The
        default, None, means the task cannot learn from a teacher: a student learns it
        from the hard labels only.
        """
        return None

    def distill_loss(self, soft: Any, y_pred: Any, temperature: float) -> Any:
        """Per-example loss (shape of the soft mask) of a student's raw output against
        :meth:`distill_targets`' ``y``, in TensorFlow ops; needed when that method returns targets."""
        raise NotImplementedError(f"task type {type(self).__name__} defines no distill_loss()")


def combines(task: Task) -> bool:
    """Whether ``task`` can be averaged in an ensemble (its class overrides :meth:`Task.combine`)."""
    return type(task).combine is not Task.combine


def distills(task: Task) -> bool:
    """Whether ``task`` can learn from a teacher (its class overrides :meth:`Task.distill_targets`)."""
    return type(task).distill_targets is not Task.distill_targets


class InputEncoder(_Plugin):
    """Turns raw inputs into trunk views inside the model.

    Preprocessing (normalisation, vocabularies) must be layers of the model so
    the exported SavedModel takes raw values. Layers that should learn slower
    or faster than the rest (a pretrained backbone) are marked with
    :func:`scale_learning_rate`; the trainer's optimizer applies the scale.
    """

    kind = "input"
    #: The experiment's tasks (set by automtl before ``prepare``), e.g. so that
    #: :meth:`augment` knows which targets are boxes (``Task.box_targets``).
    tasks: tuple[Task, ...] = ()
    #: A folder for this input's caches (decoded images), under the run folder and shared
    #: by the run's trials and worker processes; set by automtl before ``prepare`` (None:
    #: no run folder, e.g. in a unit test).
    cache_dir: Path | None = None
    #: Whether models of this input trained on a ninth of the training rows still rank
    #: configurations as on all rows: ``search.fidelity: auto`` trains on row subsamples only
    #: when every input says so. Tabular MLPs do; conv nets on a ninth of the images, at the
    #: few epochs a time budget allows, did not (bench/budget_quality.py --automtl-args).
    subsample_ranks: bool = False
    #: Rows per batch that ``automtl predict`` serves a model with this input (the smallest of its
    #: inputs' wins; ``--batch-size`` overrides it): large rows (images) want fewer. None: 1024.
    serving_batch: ClassVar[int | None] = None
    #: What :meth:`serving_source` reads, in a few words ("an image file or a folder of images"),
    #: for messages about a ``--data`` path nothing reads. Empty: it reads none.
    serving_sources: ClassVar[str] = ""
    #: Whether a small training table of this input is cross-validated by default (``data.folds``
    #: unset, at most :data:`automtl.data.split.SMALL_TABLE_ROWS` rows, no named split): its
    #: trials are cheap enough to train once per fold. Only when every input says so; images and
    #: texts keep the hold-out split (a trial costs k times more).
    small_data_folds: bool = False
    #: Whether this input's arrays are made row by row from a table's columns (numbers, text), so that a
    #: training table larger than memory can stream through it in batches (``data.stream``).
    streams_from_table: bool = False

    def prepare(self, train: Table) -> None:
        """Learn statistics and vocabularies from the training split."""

    def specs(self) -> list[InputSpec]:
        raise NotImplementedError

    def arrays(self, data: Table) -> dict[str, np.ndarray | StreamedArray]:
        """Raw model-input arrays for ``data``, keyed by :class:`InputSpec` name. An input whose
        decoded rows would not fit in memory (see :func:`memory_budget_bytes`) may return a
        :class:`StreamedArray` instead: the trainer then reads its rows batch by batch."""
        raise NotImplementedError

    def build(self, inputs: Mapping[str, Any], params: TrialParams) -> dict[str, Any]:
        """Return views, e.g. ``{"vector": tensor}``, from the raw Keras inputs; every task shares them.

        An encoder that implements :meth:`blocks` need not implement this (its blocks are applied once)."""
        offered = self.blocks(inputs, params)
        if offered is None:
            raise NotImplementedError(f"{type(self).__name__} implements neither build() nor blocks()")
        return offered.apply()

    def blocks(self, inputs: Mapping[str, Any], params: TrialParams) -> EncoderBlocks | None:
        """Opt in to per-task sharing: the encoder's stem plus its copyable layers (:class:`EncoderBlocks`),
        which the searched ``sharing`` scheme shares, copies per task or mixes, level by level with the
        dense trunk. The default (None) means nothing to copy: :meth:`build`'s views are shared by every task."""
        return None

    @classmethod
    def serving_arrays(cls, spec: Mapping[str, Any], columns: Mapping[str, np.ndarray], source: Path,
                       root: Path | None) -> tuple[np.ndarray | StreamedArray, dict[str, np.ndarray]] | None:
        """For ``automtl predict``: this input's SavedModel array built from a data file's columns,
        plus facts per row that help read the outputs (e.g. each image's original size), or None
        to let automtl map the columns itself (numeric and text columns, NPZ arrays). ``spec`` is
        the input's manifest entry (:meth:`InputSpec.describe` plus ``input`` and ``type``);
        ``source`` the data file (or folder); ``root`` the ``--root`` option."""
        return None

    @classmethod
    def serving_source(cls, path: Path, inputs: Sequence[dict[str, Any]]) -> ServingSource | None:
        """For ``automtl predict``: the columns of a ``--data`` path that is no data file automtl
        reads (a folder, a file of another type), when this input type reads it itself (a folder of
        images: one row per file), else None. ``inputs`` are the model's manifest input entries, in
        memory: the hook may fill in the entry of the input it feeds (the column it put the paths in).
        Raise :class:`DataError` when the path is this input's kind but unusable (a folder without
        images); automtl shows it when no other input type reads the path. Default: None."""
        return None

    def portable_inputs(self, model: Any) -> list[PortableInput]:
        """Inputs that ONNX and LiteRT exports take in another form (string ids, a fixed
        image size), read from the trained Keras ``model``. Default: none (numeric inputs
        pass unchanged). A string input without one cannot be exported to those formats."""
        return []

    def augment(self, x: dict[str, Any], y: dict[str, Any], params: TrialParams, rng: Any) -> tuple[dict, dict]:
        """Training-time augmentation of one batch, in the graph (``rng`` is a
        ``tf.random.Generator``). It may change targets too (boxes move with a
        flipped image). The default changes nothing."""
        return x, y

    def describe(self) -> dict[str, Any]:
        return {}


class Reader:
    """Reads one kind of data file into a :class:`Table` (registered under ``automtl.readers``).

    automtl reads CSV, Parquet, NPZ and JSON Lines itself; a plugin adds a file
    type (``suffixes`` + :meth:`read`) or reshapes a table another reader read
    (:meth:`refine`: a box CSV becomes one row per image). Raise
    :class:`DataError` naming the file and the record for a bad file.
    """

    #: lower-case suffixes, with the dot, of the files :meth:`read` opens
    suffixes: ClassVar[tuple[str, ...]] = ()

    def read(self, path: Path) -> Table:
        raise NotImplementedError

    def refine(self, table: Table, path: Path) -> Table | None:
        """Offered every table read from ``path``: a new table to use instead, or None (the default)."""
        return None
