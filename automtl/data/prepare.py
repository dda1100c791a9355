"""Turn a validated experiment into plugins plus train/validation arrays (numpy only).

Everything here runs before TensorFlow is imported, so bad data is reported
in a second, not after a framework start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any


from automtl.config import Experiment
from automtl.core import plugins
from automtl.data.arrays import Arrays, Fold, Prepared, check_finite, check_model_inputs, to_arrays
from automtl.data.readers import read_table
from automtl.data.split import Split, check_no_shared_groups, recorded_split, take_split
from automtl.data.streamed import wants_stream
from automtl.data.table import Table
from automtl.errors import DataError, MissingColumns

if TYPE_CHECKING:  # the plugin API imports data (its Table); here its types are annotations only
    from automtl.plugin_base import InputEncoder, Task


def instantiate(exp: Experiment) -> tuple[list[InputEncoder], list[Task]]:
    """Create the plugins named in the experiment (validating their options)."""
    encoders = [plugins.load("input", i.type, where=f"inputs.{i.name}")(i.name, i.options) for i in exp.inputs]
    tasks = [plugins.load("task", t.type, where=f"tasks.{t.name}")(t.name, t.options) for t in exp.tasks]
    for plugin, cfg in zip([*encoders, *tasks], [*exp.inputs, *exp.tasks]):
        plugin.type_name = cfg.type  # the entry-point name, for the manifest
        plugin.base_dir = exp.base_dir  # option paths resolve like the experiment file's
        plugin.cache_dir = Path(exp.run_dir).resolve() / "cache"  # shared by the run's trials and workers
    for task, cfg in zip(tasks, exp.tasks):
        if cfg.metric is not None:
            task.use_metric(cfg.metric)  # ranks trials, prunes, selects ensembles and compares baselines
    for enc in encoders:
        enc.tasks = tuple(tasks)  # e.g. so image augmentation can move box targets
    return encoders, tasks


@dataclass
class Loaded:
    """The training table and how it is split: a validation table, or (``data.folds``) K fold pairs."""

    train: Table
    valid: Table | None
    folds: list[tuple[Table, Table]]
    split: Split | None


def load_data(exp: Experiment, run_dir: Path | None = None, table: Table | None = None) -> Loaded:
    """Read the data files and split them; ``run_dir``: use (or record) the run's ``split.json``;
    ``table``: the training file, when the caller has read it already."""
    if table is None:
        table = read_table(exp.path(exp.data.train), role="training data")
    if exp.data.valid is not None:
        valid = read_table(exp.path(exp.data.valid), role="validation data")
        if exp.data.group_rule is not None:
            check_no_shared_groups(table, valid, exp.data.group_rule)
        return Loaded(table, valid, [], None)
    split = recorded_split(exp.data, table, run_dir)
    if split.folds:
        return Loaded(table, None, [_fold_tables(table, rows, k, split.folds) for k, rows in enumerate(split.valid)], split)
    train, valid = take_split(table, split.valid[0])
    return Loaded(train, valid, [], split)


def _fold_tables(table: Table, valid_rows: Any, k: int, n: int) -> tuple[Table, Table]:
    train, valid = take_split(table, valid_rows)
    train.source = f"{table.source} (training rows of fold {k + 1}/{n})"
    valid.source = f"{table.source} (validation rows of fold {k + 1}/{n})"
    return train, valid


def load_tables(exp: Experiment, run_dir: Path | None = None) -> tuple[Table, Table]:
    """The training and validation tables of a hold-out split (or separate files)."""
    loaded = load_data(exp, run_dir)
    if loaded.valid is None:
        raise DataError("this experiment cross-validates (data.folds): there is no single validation table")
    return loaded.train, loaded.valid


def fit_arrays(encoders: list[InputEncoder], tasks: list[Task], train_t: Table,
               valid_t: Table | None, keep_unlabelled: bool = False) -> tuple[Arrays, Arrays | None]:
    """Fit the plugins on the training rows only, then build both sides' arrays (each side needs labels).

    Whatever would make every trial fail is refused here, naming the file, the
    input or task and the column: two inputs feeding one model input, infinite
    input values, non-finite targets where a row is labelled, a task with no
    labelled rows in a split. Rows labelled for no task train nothing and score
    nothing: they are left out unless ``keep_unlabelled`` (a distillation
    teacher labels them).
    """
    missing = []
    for plugin in (*encoders, *tasks):
        try:
            plugin.prepare(train_t)
        except MissingColumns as exc:  # the other plugins' missing columns go in the same error
            missing.append(exc)
    if missing:
        raise MissingColumns.merged(missing)
    check_model_inputs(encoders)
    train = to_arrays(encoders, tasks, train_t)
    valid = to_arrays(encoders, tasks, valid_t) if valid_t is not None else None
    check_finite(encoders, tasks, train, train_t)
    if valid is not None:
        check_finite(encoders, tasks, valid, valid_t)
    names = [t.name for t in tasks]
    if not keep_unlabelled:
        train = train.only(names)
        valid = valid.only(names) if valid is not None else None
    for task in tasks:
        if not train.mask[task.name].any():
            raise DataError(f"{train_t.source}: task '{task.name}' has no labelled rows in the training data")
        if valid is not None and not valid.mask[task.name].any():
            raise DataError(f"{valid_t.source}: task '{task.name}' has no labelled rows in the validation data")
    return train, valid


def prepare(exp: Experiment, encoders: list[InputEncoder], tasks: list[Task], run_dir: Path | None = None,
            keep_unlabelled: bool = False, table: Table | None = None) -> Prepared:
    """Load and split the data, fit the plugins on the training split, build arrays.

    With ``data.folds`` the given plugins are fitted on every training row
    (the exported model's), and each fold gets plugins of its own fitted on
    its training rows only, so no fold learns a vocabulary or a scale from
    the rows it is scored on. ``table``: the training file, when the caller has read it already.
    """
    if wants_stream(exp.data, exp.path(exp.data.train)):
        # (imported here: the streamed path builds on this module's Arrays and checks)
        from automtl.data.streamed_table import prepare_streamed

        return prepare_streamed(exp, encoders, tasks, run_dir, keep_unlabelled)
    loaded = load_data(exp, run_dir, table)
    train, valid = fit_arrays(encoders, tasks, loaded.train, loaded.valid, keep_unlabelled)
    folds = []
    for fold_train, fold_valid in loaded.folds:
        fold_encoders, fold_tasks = instantiate(exp)
        folds.append(Fold(fold_encoders, fold_tasks, *fit_arrays(fold_encoders, fold_tasks, fold_train, fold_valid,
                                                                          keep_unlabelled)))
    sources = {"train": loaded.train.source}
    if loaded.valid is not None:
        sources["valid"] = loaded.valid.source
    if folds:
        sources["valid"] = f"{len(folds)}-fold cross-validation of the training file"
    return Prepared(
        experiment=exp,
        encoders=encoders,
        tasks=tasks,
        train=train,
        valid=valid,
        importance={t.name: t.importance for t in exp.tasks},
        sources=sources,
        folds=folds,
        split=loaded.split,
    )

