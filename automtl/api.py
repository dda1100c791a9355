"""The public plugin API: everything a plugin of any axis may import.

Built-in plugins use only this module, exactly as a third-party package
would. A task plugin subclasses :class:`Task`, an input plugin
:class:`InputEncoder`; each is registered under an entry point
(``automtl.tasks`` / ``automtl.inputs``) whose name is the ``type`` users
write in their experiment file. The other axes, each one entry-point group:
a sharing scheme subclasses :class:`SharingScheme` (``automtl.sharing``), a
loss weighting :class:`Weighting` (``automtl.weightings``), a training
strategy :class:`Strategy` (``automtl.strategies``); a search backend
declares a :class:`BackendSpec` whose engine is a :class:`Backend`
(``automtl.backends``); a data format is a :class:`Reader`
(``automtl.readers``); an export format declares an :class:`ExportFormat`
(``automtl.formats``); a prediction format of ``automtl predict`` is a
:class:`PredictionFormat` (``automtl.predictions``); a demo is a function writing data and an experiment
file into a folder (``automtl.demos``). Members declare their searchable
parameters as :class:`ParamSpec` (see :class:`Declared`).
"""

from __future__ import annotations

from typing import Any

from automtl.backends.base import Backend, BackendSpec, StudyStore, TimeLeft, countdown
from automtl.core.formats import ExportFormat
from automtl.core.params import Declared, ParamSpec, choice, positive, positive_int
from automtl.core.predictions import PredictionFormat, Predictions, ServingSource
from automtl.core.trial import Objective, TrialHandle, TrialOutcome, TrialPruned, TrialRecord, trial_dir
from automtl.core.trial_params import HeadParams, TrialParams
from automtl.data.streamed import MappedArray, StreamedArray, memory_budget_bytes
from automtl.data.table import Table, as_float, is_missing, object_column
from automtl.errors import ConfigError, DataError, MissingColumns, TrialFailed
from automtl.model.blocks import dense_block
from automtl.plugin_base import (Block, EncoderBlocks, InputEncoder, InputSpec, Metric, NoOptions, Options,
                                 PortableInput, Reader, Targets, Task, Unavailable, combines, distills)
from automtl.model.lr_scale import scale_learning_rate
from automtl.model.sharing.base import Shared, SharingScheme, Stream, Trunk, gated, mix, pooled_summary, shared_last
from automtl.space import ChoiceParam, FixedParam, FloatParam, IntParam, Param, SearchSpace
from automtl.training.losses import masked_mean
from automtl.training.optimizer import FusedAdam
from automtl.training.strategies.base import Strategy, apply_gradients, gather, regularisation
from automtl.training.weighting.base import Weighting

__all__ = [
    # the axes' base classes and declarations
    "Backend",
    "BackendSpec",
    "Declared",
    "ExportFormat",
    "PredictionFormat",
    "Predictions",
    "ServingSource",
    "SharingScheme",
    "Strategy",
    "StudyStore",
    "Weighting",
    # what their members build on
    "ChoiceParam",
    "FixedParam",
    "FloatParam",
    "FusedAdam",
    "IntParam",
    "Objective",
    "Param",
    "SearchSpace",
    "Shared",
    "Stream",
    "TimeLeft",
    "TrialFailed",
    "Unavailable",
    "TrialHandle",
    "TrialOutcome",
    "TrialPruned",
    "TrialRecord",
    "Trunk",
    "apply_gradients",
    "choice",
    "countdown",
    "gated",
    "gather",
    "masked_mean",
    "mix",
    "pooled_summary",
    "positive",
    "positive_int",
    "regularisation",
    "shared_last",
    "trial_dir",
    # tasks and inputs
    "Block",
    "ConfigError",
    "DataError",
    "EncoderBlocks",
    "HeadParams",
    "InputEncoder",
    "InputSpec",
    "MappedArray",
    "Metric",
    "MissingColumns",
    "Reader",
    "StreamedArray",
    "NoOptions",
    "Options",
    "ParamSpec",
    "PortableInput",
    "Table",
    "Targets",
    "Task",
    "TrialParams",
    "as_float",
    "combines",
    "dense_block",
    "distills",
    "is_missing",
    "memory_budget_bytes",
    "object_column",
    "scale_learning_rate",
    "NanToZero",
]


def __getattr__(name: str) -> Any:
    # NanToZero is a Keras layer: defined lazily so importing the API stays light.
    if name == "NanToZero":
        from automtl.model.layers import NanToZero

        return NanToZero
    raise AttributeError(name)
