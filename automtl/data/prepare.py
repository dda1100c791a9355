"""Turn a validated experiment into plugins plus train/validation arrays (numpy only).

Everything here runs before TensorFlow is imported, so bad data is reported
in a second, not after a framework start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from automtl import plugins
from automtl.config import Experiment
from automtl.data.readers import read_table
from automtl.data.split import split_fraction
from automtl.data.table import Table
from automtl.errors import ConfigError, DataError

if TYPE_CHECKING:  # the plugin API imports data (its Table); here its types are annotations only
    from automtl.api import InputEncoder, Task


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
        pick = lambda d: {k: v[rows] for k, v in d.items()}  # noqa: E731
        return Arrays(pick(self.x), pick(self.y), pick(self.mask))

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
        arrays = [*self.x.values(), *self.y.values(), *self.mask.values()]
        return int(sum(a.nbytes if a.dtype != object else 64 * a.size for a in arrays))


@dataclass
class Prepared:
    experiment: Experiment
    encoders: list[InputEncoder]
    tasks: list[Task]
    train: Arrays
    valid: Arrays
    importance: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def only(self, task: str) -> "Prepared":
        """One task alone, as :func:`prepare` makes it for an experiment with that task only
        (the single-task baselines): the same split, plugins and rows labelled for it."""
        tasks = [t for t in self.tasks if t.name == task]
        exp = self.experiment.model_copy(update={"tasks": [t for t in self.experiment.tasks if t.name == task]})
        return Prepared(exp, self.encoders, tasks, self.train.only([task]), self.valid.only([task]),
                        {task: self.importance.get(task, 1.0)}, self.sources)


def instantiate(exp: Experiment) -> tuple[list[InputEncoder], list[Task]]:
    """Create the plugins named in the experiment (validating their options)."""
    encoders = [plugins.load("input", i.type, where=f"inputs.{i.name}")(i.name, i.options) for i in exp.inputs]
    tasks = [plugins.load("task", t.type, where=f"tasks.{t.name}")(t.name, t.options) for t in exp.tasks]
    for plugin, cfg in zip([*encoders, *tasks], [*exp.inputs, *exp.tasks]):
        plugin.type_name = cfg.type  # the entry-point name, for the manifest
        plugin.base_dir = exp.base_dir  # option paths resolve like the experiment file's
    for enc in encoders:
        enc.tasks = tuple(tasks)  # e.g. so image augmentation can move box targets
    return encoders, tasks


def load_tables(exp: Experiment) -> tuple[Table, Table]:
    train = read_table(exp.path(exp.data.train), role="training data")
    if exp.data.valid is not None:
        return train, read_table(exp.path(exp.data.valid), role="validation data")
    return split_fraction(train, exp.data.valid_fraction, exp.data.split_seed)


def to_arrays(encoders: list[InputEncoder], tasks: list[Task], table: Table) -> Arrays:
    x: dict[str, Any] = {}
    for enc in encoders:
        x.update(enc.arrays(table))
    y, mask = {}, {}
    for task in tasks:
        targets = task.targets(table)
        y[task.name], mask[task.name] = targets.y, targets.mask
    return Arrays(x, y, mask)


def prepare(exp: Experiment, encoders: list[InputEncoder], tasks: list[Task], keep_unlabelled: bool = False) -> Prepared:
    """Load and split the data, fit the plugins on the training split, build arrays.

    Whatever would make every trial fail is refused here, naming the file, the
    input or task and the column: two inputs feeding one model input, infinite
    input values, non-finite targets where a row is labelled, a task with no
    labelled rows in a split. Rows labelled for no task train nothing and score
    nothing: they are left out unless ``keep_unlabelled`` (a distillation
    teacher labels them).
    """
    train_t, valid_t = load_tables(exp)
    for plugin in (*encoders, *tasks):
        plugin.prepare(train_t)
    check_model_inputs(encoders)
    train, valid = to_arrays(encoders, tasks, train_t), to_arrays(encoders, tasks, valid_t)
    for arrays, table in ((train, train_t), (valid, valid_t)):
        check_finite(encoders, tasks, arrays, table)
    names = [t.name for t in tasks]
    if not keep_unlabelled:
        train, valid = train.only(names), valid.only(names)
    for task in tasks:
        if not train.mask[task.name].any():
            raise DataError(f"{train_t.source}: task '{task.name}' has no labelled rows in the training data")
        if not valid.mask[task.name].any():
            raise DataError(f"{valid_t.source}: task '{task.name}' has no labelled rows in the validation data")
    return Prepared(
        experiment=exp,
        encoders=encoders,
        tasks=tasks,
        train=train,
        valid=valid,
        importance={t.name: t.importance for t in exp.tasks},
        sources={"train": train_t.source, "valid": valid_t.source},
    )


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
            if values is None or values.dtype.kind != "f":
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

