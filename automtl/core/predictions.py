"""What a prediction format declares, and what ``automtl predict`` hands it to write.

A prediction format is one way ``automtl predict`` writes a model's outputs:
the built-in ``table`` (CSV, Parquet, JSON Lines, NPZ: one column per output)
or a plugin's own file (the detection plugin's COCO results). Each is a
:class:`PredictionFormat` subclass registered under the ``automtl.predictions``
entry-point group, like every other axis. Its module is light to import
(numpy, no TensorFlow): ``automtl predict`` checks the format against the
model's manifest before TensorFlow starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np


@dataclass
class Predictions:
    """A model's outputs over a ``--data`` source, ready to write."""

    #: the exported model's ``automtl.json`` (its ``tasks`` entries say what each output is)
    manifest: dict[str, Any]
    #: ``<task>.<output>`` -> one value per row, after each task's :meth:`~automtl.api.Task.serving_outputs`
    outputs: dict[str, np.ndarray]
    #: the outputs in the manifest's order (tasks first to last)
    order: list[str]
    #: the ``--data`` columns by name (ids, file paths), one value per row
    columns: Mapping[str, np.ndarray]
    #: the columns to copy beside the outputs: ``--keep`` ones and those saying which row is which
    keep: dict[str, np.ndarray]
    rows: int
    #: ``--probabilities``: a named vector output (class probabilities) as one column per entry
    #: (``columns``) or one list per row (``list``), where the format has columns
    vectors: str = "columns"
    #: what the input plugins said about each row (an image's own width and height), by input name
    facts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


class PredictionFormat:
    """One way ``automtl predict --format NAME`` writes predictions (registered under ``automtl.predictions``).

    automtl creates it with no arguments and sets :attr:`name` to its entry point's name.
    """

    #: lower-case ``--out`` suffixes (with the dot) it writes
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: what it writes, in a few words, for messages ("a JSON file")
    writes: ClassVar[str] = "a file"
    #: what it is, in a few words (for ``automtl predict --help`` and messages)
    doc: ClassVar[str] = ""
    #: the entry point's name (set by automtl)
    name: str = ""

    def check(self, manifest: Mapping[str, Any]) -> str | None:
        """Why the model of ``manifest`` cannot be written in this format (asked before TensorFlow
        starts, so the user learns it at once), or None. Default: any model can."""
        return None

    def write(self, out: Path, predictions: Predictions) -> list[str]:
        """Write ``predictions`` to ``out`` (its folder exists); return what was written, a few
        names (columns, or a task and what of it), for the command's summary line."""
        raise NotImplementedError(f"prediction format {type(self).__name__} defines no write()")


@dataclass
class ServingSource:
    """A ``--data`` path an input plugin reads itself (:meth:`~automtl.api.InputEncoder.serving_source`)."""

    #: column name -> one value per row (a folder's image paths)
    columns: dict[str, np.ndarray]
    #: columns written beside the outputs, first, so that a user sees which row is which
    keep: tuple[str, ...] = ()
