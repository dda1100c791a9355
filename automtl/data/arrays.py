"""What preparing the data produces: in-memory arrays per split, folds, the prepared data, and their checks.

Apart from :mod:`automtl.data.prepare` (which reads, splits and fits) so that
the streamed path (:mod:`automtl.data.streamed_table`) builds on the same
types and checks while :func:`automtl.data.prepare.prepare` hands a streamed
table to it: neither imports the other back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from automtl.config import Experiment
from automtl.data.split import Split
from automtl.data.streamed import is_streamed, rows_of
from automtl.data.table import Table
from automtl.errors import ConfigError, DataError

if TYPE_CHECKING:  # the plugin API imports data (its Table); here its types are annotations only
    from automtl.plugin_base import InputEncoder, Task


@dataclass
class Arrays:
    """In-memory model inputs, per-task targets and per-task label masks."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    mask: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.x.values())))

    def take(self, rows: np.ndarray) -> "Arrays":
        """The same arrays for these rows only (``rows``: indices)."""
        pick = lambda d: {k: rows_of(v, rows) for k, v in d.items()}  # noqa: E731
        return Arrays(pick(self.x), pick(self.y), pick(self.mask))

    def concat(self, other: "Arrays") -> "Arrays":
        """These rows, then ``other``'s (same inputs and tasks; in-memory arrays only)."""
        join = lambda a, b: {k: np.concatenate([a[k], b[k]]) for k in a}  # noqa: E731
        return Arrays(join(self.x, other.x), join(self.y, other.y), join(self.mask, other.mask))

    def labelled_rows(self, tasks: list[str] | None = None) -> np.ndarray:
        """Whether each row carries a label for at least one of ``tasks`` (default: any task)."""
        names = tasks if tasks is not None else list(self.mask)
        return np.any([self.mask[t].reshape(len(self), -1).any(axis=1) for t in names], axis=0)

    def only(self, tasks: list[str]) -> "Arrays":
        """These tasks' targets, on the rows labelled for at least one of them."""
        rows = np.flatnonzero(self.labelled_rows(tasks))
        kept = Arrays(self.x, {t: self.y[t] for t in tasks}, {t: self.mask[t] for t in tasks})
        return kept if len(rows) == len(self) else kept.take(rows)

    def nbytes(self) -> int:
        """Bytes held in memory (streamed inputs are not: they are read per batch)."""
        arrays = [a for a in (*self.x.values(), *self.y.values(), *self.mask.values()) if not is_streamed(a)]
        return int(sum(a.nbytes if a.dtype != object else 64 * a.size for a in arrays))

    @property
    def streamed(self) -> bool:
        """True when an input is read from disk per batch (:class:`~automtl.data.streamed.StreamedArray`)."""
        return any(is_streamed(a) for a in self.x.values())


@dataclass
class Fold:
    """One fold of a cross-validated search: plugins fitted on its training rows, and its arrays."""

    encoders: list[InputEncoder]
    tasks: list[Task]
    train: Arrays
    valid: Arrays


@dataclass
class Prepared:
    experiment: Experiment
    encoders: list[InputEncoder]
    tasks: list[Task]
    #: the training rows (all rows of the training file with ``data.folds``: what the exported model trains on)
    train: Arrays
    #: the validation rows; None with ``data.folds`` (each fold has its own)
    valid: Arrays | None
    importance: dict[str, float] = field(default_factory=dict)
    #: where the rows came from, for the manifest (a streamed table adds ``stream``: files, rows, sample, split)
    sources: dict[str, Any] = field(default_factory=dict)
    folds: list[Fold] = field(default_factory=list)
    split: Split | None = None

    @property
    def valid_rows(self) -> int:
        return len(self.valid) if self.valid is not None else len(self.folds[0].valid)

    @property
    def export_rows(self) -> dict[str, np.ndarray]:
        """Inputs an export checks its formats on: the validation rows (every training row with folds)."""
        return self.valid.x if self.valid is not None else self.train.x

    @property
    def can_refit(self) -> bool:
        """Whether a final model may train on the training and validation rows together: only when the
        validation rows were split off the training file (a separate validation file is the user's
        own hold-out) and both are in memory."""
        return (self.valid is not None and not self.folds and self.experiment.data.valid is None
                and not self.train.streamed and not self.valid.streamed)

    def with_valid_rows(self) -> "Prepared":
        """The same plugins (fitted on the training rows) with the validation rows added to the
        training rows and no validation rows: what a final refit trains on."""
        assert self.valid is not None
        return Prepared(self.experiment, self.encoders, self.tasks, self.train.concat(self.valid), None,
                        self.importance, self.sources, [], self.split)

    def only(self, task: str) -> "Prepared":
        """One task alone, as :func:`prepare` makes it for an experiment with that task only
        (the single-task baselines): the same split, plugins and rows labelled for it."""
        tasks = [t for t in self.tasks if t.name == task]
        exp = self.experiment.model_copy(update={"tasks": [t for t in self.experiment.tasks if t.name == task]})
        valid = self.valid.only([task]) if self.valid is not None else None
        folds = [Fold(f.encoders, [t for t in f.tasks if t.name == task], f.train.only([task]), f.valid.only([task]))
                 for f in self.folds]
        return Prepared(exp, self.encoders, tasks, self.train.only([task]), valid,
                        {task: self.importance.get(task, 1.0)}, self.sources, folds, self.split)


def to_arrays(encoders: list[InputEncoder], tasks: list[Task], table: Table) -> Arrays:
    x: dict[str, Any] = {}
    for enc in encoders:
        x.update(enc.arrays(table))
    y, mask = {}, {}
    for task in tasks:
        targets = task.targets(table)
        y[task.name], mask[task.name] = targets.y, targets.mask
    return Arrays(x, y, mask)


def check_model_inputs(encoders: list[InputEncoder]) -> None:
    """Each model input has one name and each data column feeds one model input.

    Two inputs declaring the same categorical column would create two model
    inputs of one name (every trial would fail); a column listed twice is a
    slip in the experiment file.
    """
    owner_of_input: dict[str, str] = {}
    owner_of_column: dict[str, str] = {}
    for enc in encoders:
        for spec in enc.specs():
            here = f"input '{enc.name}'"
            if spec.name in owner_of_input:
                raise ConfigError(f"{owner_of_input[spec.name]} and {here} both define the model input "
                                  f"'{spec.name}'; declare each column under one input only")
            owner_of_input[spec.name] = here
            for column in spec.meta.get("columns") or ():
                if column in owner_of_column:
                    other = owner_of_column[column]
                    where = f"{here} twice" if other == here else f"both {other} and {here}"
                    raise ConfigError(f"column '{column}' is declared by {where} (as model inputs); declare each "
                                      "column once")
                owner_of_column[column] = here


def check_finite(encoders: list[InputEncoder], tasks: list[Task], arrays: Arrays, table: Table) -> None:
    """No infinite input value (NaN is a missing value the model imputes) and finite targets where labelled."""
    for enc in encoders:
        for spec in enc.specs():
            values = arrays.x.get(spec.name)
            if values is None or is_streamed(values) or values.dtype.kind != "f":  # streamed: read per batch
                continue
            flat = values.reshape(len(values), -1)
            bad = np.isinf(flat)
            if bad.any():
                row = int(np.flatnonzero(bad.any(axis=1))[0])
                j = int(np.flatnonzero(bad[row])[0])
                columns = spec.meta.get("columns") or []
                column = (f"column '{columns[j]}'" if values.ndim == 2 and len(columns) == values.shape[1]
                          else f"model input '{spec.name}'")
                raise DataError(f"{table.source}: {table.row_label(row)}: {column} (input '{enc.name}') holds an "
                                f"infinite value ({float(flat[row, j])}); use finite numbers, or leave the cell "
                                "empty for a missing value")
    for task in tasks:
        y, mask = arrays.y[task.name], arrays.mask[task.name]
        if y.dtype.kind not in "fc":
            continue
        labelled = mask > 0
        finite = np.isfinite(y)
        if finite.ndim > labelled.ndim:
            finite = finite.reshape(*labelled.shape, -1).all(axis=-1)
        elif finite.ndim < labelled.ndim:
            continue
        bad = (labelled & ~finite).reshape(len(labelled), -1).any(axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{table.source}: {table.row_label(row)}: task '{task.name}' has a non-finite target "
                            "(inf or NaN) in a labelled row; targets must be finite numbers (leave the cell empty "
                            "for a missing label)")
