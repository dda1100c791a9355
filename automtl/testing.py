"""Contract checks a task or input plugin runs against itself from pytest.

The built-in plugins pass these checks in automtl's own test suite; a
third-party plugin calls them the same way::

    from automtl.testing import check_task

    def test_my_task_keeps_the_contract(tmp_path):
        check_task(MyTask, {"target": "y"}, my_table, inputs=[{"name": "x", "type": "tabular", "numeric": ["f*"]}],
                   folder=tmp_path)

Each check raises ``AssertionError`` saying which promise broke. What is
checked: bad options are refused naming the plugin; a task's mask has the
shape of its per-example loss and masks the rows without a label; ``score``
is finite and higher-is-better; ``describe()`` is JSON; the optional
``combine`` and ``distill_*`` hooks keep their shapes; the post-processing
(or an input's preprocessing) survives a SavedModel save and reload; and a
two-trial search with the plugin runs and exports.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from automtl.api import InputEncoder, Table, Targets, Task
from automtl.core.trial_params import HeadParams, TrialParams
from automtl.errors import ConfigError

#: Trunk views a task may ask for, with the feature shape the checks feed its head.
VIEW_SHAPES = {"vector": (16,), "spatial": (6, 6, 8)}
#: A tiny space for the two-trial search.
SPACE = {
    "parameters": {"trunk.depth": 1, "trunk.units": 16, "learning_rate": 0.005, "batch_size": 32, "dropout": 0.0,
                   "strategy": {"choice": ["joint", "alternating"]}},
    "per_task": {"head.units": 8, "head.depth": 1},
}


def check_task(cls: type[Task], options: Mapping[str, Any], table: Table | Any, *,
               inputs: Sequence[Mapping[str, Any]], missing_rows: Sequence[int] = (), data: Path | None = None,
               folder: Path | None = None, search: bool = True) -> None:
    """Check a task plugin's contract on ``table``.

    ``missing_rows`` are rows of ``table`` that carry no label for the task
    (they must be masked); ``inputs`` are experiment-file entries of the inputs
    for the two-trial search (``[{"name": "x", "type": "tabular", "numeric":
    ["f*"]}]``), which reads ``data`` (the file ``table`` was read from; by
    default the table is written to a file) and writes under ``folder`` (a
    temporary folder by default).
    """
    table = _as_table(table)
    _check_refuses_unknown_option(cls, options, "task 'contract'")
    task = cls("contract", dict(options))
    task.prepare(table)
    targets = task.targets(table)
    assert isinstance(targets, Targets), f"{cls.__name__}.targets() must return automtl.api.Targets"
    y, mask = np.asarray(targets.y), np.asarray(targets.mask)
    assert len(y) == len(mask) == len(table), (
        f"{cls.__name__}.targets(): y and mask need one row per example ({len(table)}), got {len(y)} and {len(mask)}")
    assert set(np.unique(mask)) <= {0.0, 1.0}, f"{cls.__name__}.targets(): mask must hold 0 and 1 only"
    rows = mask.reshape(len(mask), -1).max(axis=1)
    assert rows.max() == 1, f"{cls.__name__}.targets(): no row of the table is labelled"
    unmasked = [i for i in missing_rows if rows[i] > 0]
    assert not unmasked, f"{cls.__name__}.targets(): rows {unmasked[:5]} carry no label but are not masked"
    assert y.dtype.kind in "fiub" and np.all(np.isfinite(y.astype(np.float64))), (
        f"{cls.__name__}.targets(): y must be finite numbers (0 where a label is missing, never a fake NaN)")
    assert task.view in (*VIEW_SHAPES, "sequence"), f"{cls.__name__}.view must be vector, spatial or sequence"
    assert task.direction in ("maximize", "minimize"), f"{cls.__name__}.direction must be maximize or minimize"

    model, features = _head_model(task, y)
    raw = model(features, training=False)
    loss = np.asarray(task.loss(_tensor(y), raw))
    assert loss.shape == mask.shape, (
        f"{cls.__name__}.loss() returns shape {loss.shape}, but the mask has shape {mask.shape}: the per-example "
        "loss must have the mask's shape so that missing labels can be masked")
    assert np.all(np.isfinite(loss[mask > 0])), f"{cls.__name__}.loss() is not finite on labelled examples"

    metrics = task.evaluate(y, mask, np.asarray(raw).astype(np.float64))
    assert task.primary_metric in metrics, (
        f"{cls.__name__}.evaluate() must return its primary metric '{task.primary_metric}', got {sorted(metrics)}")
    score = task.score(metrics)
    assert isinstance(score, float) and math.isfinite(score), f"{cls.__name__}.score() must be a finite float"
    better = dict(metrics)
    step = abs(metrics[task.primary_metric]) * 0.1 + 0.01
    better[task.primary_metric] = metrics[task.primary_metric] + (step if task.direction == "maximize" else -step)
    assert task.score(better) >= score, (
        f"{cls.__name__}.score() must be higher-is-better: a better {task.primary_metric} gave a lower score")
    missing = [m.name for m in task.available_metrics() if m.name not in metrics]
    assert not missing, f"{cls.__name__}.evaluate() must return every metric it declares; missing {missing}"
    chance = task.chance_output()
    if chance is not None:
        chance = np.asarray(chance, np.float64)
        constant = np.broadcast_to(chance, (len(y), *chance.shape)).copy()
        assert constant.shape == np.asarray(raw).shape, (
            f"{cls.__name__}.chance_output() must be one example's raw output, shape {np.asarray(raw).shape[1:]}, "
            f"got {chance.shape}")
        assert math.isfinite(task.score(task.evaluate(y, mask, constant))), (
            f"{cls.__name__}.chance_output() must score as a finite float")
    _check_json(task.describe(), f"{cls.__name__}.describe()")
    _check_postprocess_saves(task, model, features)
    _check_ensemble_hooks(task, y, mask, raw)
    if search:
        _check_search(("task", cls, options), inputs=inputs, tasks=None, table=table, data=data, folder=folder)


def check_input(cls: type[InputEncoder], options: Mapping[str, Any], table: Table | Any, *,
                tasks: Sequence[Mapping[str, Any]], data: Path | None = None, folder: Path | None = None,
                search: bool = True) -> None:
    """Check an input plugin's contract on ``table``.

    ``tasks`` are experiment-file entries of the tasks for the two-trial search
    (``[{"name": "y", "type": "regression", "target": "y"}]``); ``data`` and
    ``folder`` as for :func:`check_task`.
    """
    table = _as_table(table)
    _check_refuses_unknown_option(cls, options, "input 'contract'")
    enc = cls("contract", dict(options))
    enc.tasks = ()
    enc.prepare(table)
    specs = enc.specs()
    assert specs, f"{cls.__name__}.specs() must name at least one model input"
    names = [s.name for s in specs]
    assert len(set(names)) == len(names), f"{cls.__name__}.specs(): input names must be unique, got {names}"
    arrays = enc.arrays(table)
    assert sorted(arrays) == sorted(names), f"{cls.__name__}.arrays() keys {sorted(arrays)} differ from specs() {names}"
    for s in specs:
        assert len(arrays[s.name]) == len(table), f"{cls.__name__}.arrays()['{s.name}'] needs one row per example"
    _check_json([s.describe() for s in specs], f"{cls.__name__}.specs() descriptions")
    _check_json(enc.describe(), f"{cls.__name__}.describe()")
    _check_input_saves(enc, specs, arrays)
    if search:
        _check_search(("input", cls, options), inputs=None, tasks=tasks, table=table, data=data, folder=folder)


# -- pieces ---------------------------------------------------------------------------------
def _as_table(table: Any) -> Table:
    if isinstance(table, Table):
        return table
    import pandas as pd

    if isinstance(table, pd.DataFrame):
        columns = {str(c): (table[c].to_numpy() if table[c].dtype.kind in "fiub"
                            else table[c].to_numpy(dtype=object)) for c in table.columns}
        return Table("contract-table", columns)
    raise TypeError(f"expected an automtl.api.Table or a pandas DataFrame, got {type(table).__name__}")


def _check_refuses_unknown_option(cls: type, options: Mapping[str, Any], owner: str) -> None:
    try:
        cls("contract", {**options, "no_such_option_zz": 1})
    except ConfigError as exc:
        assert owner in str(exc) and "no_such_option_zz" in str(exc), (
            f"{cls.__name__}: an unknown option must be refused naming the plugin ({owner}) and the option; got: {exc}")
        return
    raise AssertionError(f"{cls.__name__}: an unknown option was accepted (options are pydantic models with "
                         "extra='forbid': subclass automtl.api.Options)")


def _tensor(y: np.ndarray) -> Any:
    import tensorflow as tf

    return tf.constant(y)


def _head_model(task: Task, y: np.ndarray) -> tuple[Any, Any]:
    """The task's head on random features of its view (a sequence view carries the token-mask channel)."""
    import keras

    n = len(y)
    rng = np.random.default_rng(0)
    if task.view == "sequence":
        length = int(y.shape[1]) if y.ndim >= 2 else 8
        shape = (length, 9)
        features = rng.normal(size=(n, *shape)).astype(np.float32)
        features[..., -1] = 1.0
    else:
        shape = VIEW_SHAPES[task.view]
        features = rng.normal(size=(n, *shape)).astype(np.float32)
    inp = keras.Input(shape=shape, name="features")
    out = task.build_head(inp, HeadParams(units=8, depth=1, dropout=0.0, l2=0.0))
    return keras.Model(inp, out), features


def _check_json(value: Any, what: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{what} must be JSON-serialisable (it goes into the manifest): {exc}") from None


def _check_postprocess_saves(task: Task, model: Any, features: np.ndarray) -> None:
    """Post-processing is TensorFlow ops that survive a SavedModel save and reload."""
    import tensorflow as tf

    class Serving(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, *features.shape[1:]], tf.float32)])
        def serve(self, x: Any) -> dict[str, Any]:
            return task.postprocess(self.model(x, training=False))

    module = Serving()
    eager = module.serve(tf.constant(features[:4]))
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(module, tmp)
        loaded = tf.saved_model.load(tmp)
        served = loaded.serve(tf.constant(features[:4]))
    assert sorted(served) == sorted(eager), f"postprocess outputs changed through a SavedModel: {sorted(served)}"
    for key, value in eager.items():
        if value.dtype.is_floating:
            np.testing.assert_allclose(np.asarray(served[key]), np.asarray(value), rtol=1e-5, atol=1e-6,
                                       err_msg=f"postprocess output '{key}' differs after a SavedModel reload")


def _check_ensemble_hooks(task: Task, y: np.ndarray, mask: np.ndarray, raw: Any) -> None:
    """``combine`` of one output with itself scores as that output and post-processes;
    ``distill_targets``/``distill_loss`` give a target and a loss of the mask's shape."""
    from automtl.api import combines, distills

    name = type(task).__name__
    raw_np = np.asarray(raw)
    if combines(task):
        combined = task.combine([raw_np, raw_np], [0.5, 0.5])
        alone = task.evaluate(y, mask, raw_np.astype(np.float64))[task.primary_metric]
        twice = task.evaluate(y, mask, np.asarray(combined).astype(np.float64))[task.primary_metric]
        assert math.isclose(alone, twice, rel_tol=1e-4, abs_tol=1e-6), (
            f"{name}.combine() of an output with itself must score as that output ({task.primary_metric} {alone} "
            f"vs {twice})")
        assert task.postprocess(combined), f"{name}.postprocess() must accept what combine() returns"
    if distills(task):
        soft = task.distill_targets(raw_np, 2.0)
        assert isinstance(soft, Targets), f"{name}.distill_targets() must return automtl.api.Targets (or None)"
        assert np.asarray(soft.mask).shape == mask.shape, (
            f"{name}.distill_targets(): its mask has shape {np.asarray(soft.mask).shape}, the labels' {mask.shape}")
        loss = np.asarray(task.distill_loss(_tensor(np.asarray(soft.y)), raw, 2.0))
        assert loss.shape == mask.shape and np.all(np.isfinite(loss)), (
            f"{name}.distill_loss() must return a finite per-example loss of the mask's shape {mask.shape}, "
            f"got {loss.shape}")


def _check_input_saves(enc: InputEncoder, specs: list, arrays: dict[str, np.ndarray]) -> None:
    """Preprocessing lives in the model: a SavedModel of the views takes the raw arrays."""
    import keras
    import tensorflow as tf

    dtypes = {"string": tf.string, "float32": tf.float32, "int32": tf.int32, "int64": tf.int64, "uint8": tf.uint8}
    inputs = {s.name: keras.Input(shape=s.shape, dtype=s.dtype, name=s.name) for s in specs}
    views = enc.build(inputs, TrialParams({}))
    assert views and set(views) <= {"vector", "spatial", "sequence"}, (
        f"{type(enc).__name__}.build() must return views among vector, spatial, sequence; got {sorted(views)}")
    model = keras.Model(inputs, views)
    batch = {k: (v[:4].astype(str) if v.dtype == object else v[:4]) for k, v in arrays.items()}
    eager = model(batch, training=False)
    for view, value in eager.items():
        assert np.all(np.isfinite(np.asarray(value))), f"view '{view}' is not finite on the table's rows"

    class Serving(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

    module = Serving()
    signature = {s.name: tf.TensorSpec([None, *s.shape], dtypes[s.dtype], name=s.name) for s in specs}
    serve = tf.function(lambda **x: module.model(x, training=False)).get_concrete_function(**signature)
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(module, tmp, signatures={"serving_default": serve})
        served = tf.saved_model.load(tmp).signatures["serving_default"](**{k: tf.constant(v) for k, v in batch.items()})
    for view, value in eager.items():
        np.testing.assert_allclose(np.asarray(served[view]), np.asarray(value), rtol=1e-4, atol=1e-5,
                                   err_msg=f"view '{view}' differs after a SavedModel reload")


def _write_table(table: Table, folder: Path) -> Path:
    """The table as a data file automtl reads: NPZ for arrays, JSON Lines for list cells, else CSV."""
    cols = table.columns
    if any(np.asarray(v).ndim > 1 for v in cols.values()):
        path = folder / "data.npz"
        np.savez(path, **{k: (v.astype(str) if v.dtype == object else v) for k, v in cols.items()})
        return path
    if any(v.dtype == object and any(isinstance(c, (list, tuple, dict)) for c in v) for v in cols.values()):
        path = folder / "data.jsonl"
        with path.open("w") as fh:
            for i in range(len(table)):
                fh.write(json.dumps({k: _plain(v[i]) for k, v in cols.items()}) + "\n")
        return path
    import pandas as pd

    path = folder / "data.csv"
    pd.DataFrame({k: v for k, v in cols.items()}).to_csv(path, index=False)
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _check_search(plugin: tuple[str, type, Mapping[str, Any]], *, inputs: Sequence[Mapping[str, Any]] | None,
                  tasks: Sequence[Mapping[str, Any]] | None, table: Table, data: Path | None,
                  folder: Path | None) -> None:
    """Two trials of one epoch with the plugin, in this process; a trial completes and the best is exported."""
    import yaml
    from rich.console import Console

    from automtl.config import build_experiment
    from automtl.core import plugins
    from automtl.run.search import run_search

    kind, cls, options = plugin
    folder = Path(folder or tempfile.mkdtemp(prefix="automtl-contract-"))
    folder.mkdir(parents=True, exist_ok=True)
    data = Path(data).resolve() if data is not None else _write_table(table, folder)
    (folder / "space.yaml").write_text(yaml.safe_dump(SPACE))
    entry = {"name": "contract", "type": "contract-plugin", **options}
    raw = {
        "name": "contract",
        "data": {"train": str(data), "valid_fraction": 0.3, "split_seed": 0},
        "inputs": [entry] if kind == "input" else list(inputs or []),
        "tasks": [entry] if kind == "task" else list(tasks or []),
        "space": "space.yaml",
        "search": {"trials": 2, "epochs": 1, "patience": None, "trials_per_process": 0, "out": str(folder / "run"),
                   "baselines": "off", "ensemble": 0},
    }
    exp = build_experiment(raw, f"{cls.__name__} contract experiment", folder)
    with plugins.registered(kind, "contract-plugin", cls):
        summary = run_search(exp, console=Console(quiet=True), quiet=True, report=False)
    ok = [r for r in summary.records if r.ok]
    reasons = "; ".join(f"#{r.number}: {r.reason}" for r in summary.records if not r.ok)
    assert ok, f"no trial of the two-trial search with {cls.__name__} completed ({reasons})"
    assert summary.export_dir is not None and (summary.export_dir / "saved_model").is_dir(), (
        f"the search with {cls.__name__} exported no SavedModel")
