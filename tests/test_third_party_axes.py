"""One third-party package with a member of every axis, installed as pip would (a dist-info), used in one search.

The package imports only :mod:`automtl.api`: a reader, an input, a task, a
sharing scheme, a weighting, a strategy, a search backend, an export format,
a prediction format and a demo. Its demo is run with ``automtl search
--demo``; the search's records and export show each member was the one used,
and ``automtl predict --format`` writes the third party's file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import LEAN_FLAGS


EVERYTHING = '''
"""Every axis of automtl, as a third party writes it: automtl.api only."""
import json
import time
from pathlib import Path

import numpy as np
import yaml

from automtl import api


class NumsReader(api.Reader):
    """``.nums`` files: a JSON object of equally long columns."""

    suffixes = (".nums",)

    def read(self, path):
        try:
            columns = json.loads(Path(path).read_text())
        except ValueError as exc:
            raise api.DataError(f"{path}: not a JSON object of columns ({exc})") from None
        return api.Table(str(path), {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()})


class ColumnsOptions(api.Options):
    columns: list[str]


class ColumnsInput(api.InputEncoder):
    """Numeric columns, standardised with the training rows' mean and deviation."""

    Options = ColumnsOptions

    def _values(self, data):
        return np.stack([api.as_float(data, c, needed_by=f"input '{self.name}'") for c in self.options.columns],
                        axis=1).astype("float32")

    def prepare(self, train):
        values = self._values(train)
        self.mean, self.std = values.mean(axis=0), values.std(axis=0) + 1e-6

    def specs(self):
        return [api.InputSpec(self.name, "float32", (len(self.options.columns),), {"columns": self.options.columns})]

    def arrays(self, data):
        return {self.name: self._values(data)}

    def build(self, inputs, params):
        import keras

        scaled = keras.layers.Normalization(mean=self.mean, variance=self.std ** 2, name=f"{self.name}_scaled")
        return {"vector": scaled(inputs[self.name])}


class LevelOptions(api.Options):
    target: str


class LevelTask(api.Task):
    """A level to regress, scored by its RMSE."""

    Options = LevelOptions
    primary_metric = "rmse"
    direction = "minimize"

    def targets(self, data):
        y = api.as_float(data, self.options.target, needed_by=f"task '{self.name}'")
        return api.Targets(y=np.nan_to_num(y).astype("float32"), mask=~np.isnan(y))

    def build_head(self, features, params):
        import keras

        x = api.dense_block(features, params.units, params.depth, params.dropout, params.l2, name="hidden")
        return keras.layers.Dense(1, name="level")(x)

    def loss(self, y_true, y_pred):
        import keras

        return keras.ops.square(y_pred[:, 0] - y_true)

    def evaluate(self, y_true, mask, y_pred):
        m = mask > 0
        return {"rmse": float(np.sqrt(np.mean((y_pred[m, 0] - y_true[m]) ** 2)))}

    def score(self, metrics):
        return -metrics["rmse"]

    def postprocess(self, raw):
        return {"level": raw[:, 0]}


class SplitTop(api.SharingScheme):
    """The first ``split_top.shared`` trunk layers shared, each task its own copy of the rest."""

    parameters = (api.ParamSpec("split_top.shared", 1, low=0, integer=True, doc="layers shared by every task"),)

    def build(self, trunk, tasks, params):
        at = min(int(self.value(params, "split_top.shared")), trunk.depth)
        stream = trunk.run(trunk.begin(), 0, at)
        tensors = {t: trunk.run(stream, at, trunk.depth, tag=t).tensors for t in tasks}
        last, said = api.shared_last(trunk, at)
        return api.Shared(tensors, last, said)


class FirstFirst(api.Weighting):
    """The first task counts ``first_first.lead`` times as much as each other task."""

    parameters = (api.positive("first_first.lead", 2.0, "the first task's weight"),)

    def initial_weights(self, params):
        return [float(self.value(params, "first_first.lead"))] + [1.0] * (self.T - 1)


class SummedSteps(api.Strategy):
    """Every step minimises the plain sum of the masked task losses (no weighting)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.variables = list(self.model.trainable_variables)
        self.optimizer = api.FusedAdam(self.params.learning_rate, self.variables)
        self.optimizers = [self.optimizer]

    def step(self, x, y, mask):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            out = self.model(x, training=True)
            losses = tf.stack([api.masked_mean(t.loss(y[t.name], out[t.name]), mask[t.name]) for t in self.tasks])
            total = tf.reduce_sum(losses) + api.regularisation(self.model)
        api.apply_gradients(self.optimizer, total, tape, self.variables)
        return losses

    def in_memory_epoch(self, x, y, m, batch, steps):
        import tensorflow as tf

        n = len(self.train)

        @tf.function
        def epoch():
            total = tf.zeros([len(self.tasks)])
            for i in tf.range(steps):
                idx = tf.range(i * batch, tf.minimum((i + 1) * batch, n))
                total += self.step(*self.augment(api.gather(x, idx), api.gather(y, idx), api.gather(m, idx)))
            return total / tf.cast(steps, tf.float32)

        return epoch

    def streamed_epoch(self, dataset):
        total, count = np.zeros(len(self.tasks)), 0
        for xb, yb, mb in dataset:
            total += self.step(xb, yb, mb).numpy()
            count += 1
        return total / max(count, 1)


class _Handle:
    def __init__(self, number, params):
        self.number, self.params = number, params

    def report(self, epoch, value):
        pass


class RoundRobin(api.Backend):
    """Trial n takes the n-th value of every choice (cycling) and the low end of every range."""

    def __init__(self, settings, run_dir, space, study, objectives=()):
        self.space, self._records = space, []

    def _params(self, n):
        return self.space.sample_with(lambda p: p.values[n % len(p.values)] if isinstance(p, api.ChoiceParam) else p.low)

    def optimize(self, objective, n_trials, timeout, on_trial):
        left = api.countdown(timeout)
        while len(self._records) < n_trials and (left() is None or left() > 0):
            n = len(self._records)
            params, start = self._params(n), time.time()
            try:
                out = objective(_Handle(n, params))
                record = api.TrialRecord(n, "complete", out.score, params, out.metrics, time.time() - start,
                                         out.device, best_epoch=out.best_epoch, scores=out.scores,
                                         cost=out.attrs.get("cost", {}))
            except api.TrialPruned as exc:
                record = api.TrialRecord(n, "pruned", None, params, {}, time.time() - start, reason=str(exc))
            except api.TrialFailed as exc:
                record = api.TrialRecord(n, "fail", None, params, {}, time.time() - start, reason=exc.reason)
            self._records.append(record)
            on_trial(record)

    def records(self):
        return list(self._records)


ROUND_ROBIN = api.BackendSpec(name="round-robin", algorithms=("cycle",), default_algorithm="cycle",
                              engine="automtl_everything:RoundRobin", distributed="not at all")


def write_outputs(export_dir, rows):
    """The SavedModel's outputs on the first validation rows, as an NPZ file."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(Path(export_dir) / "saved_model")).signatures["serving_default"]
    wanted = serve.structured_input_signature[1]
    feed = {k: tf.constant(np.asarray(v)[:8], dtype=wanted[k].dtype) for k, v in rows.items() if k in wanted}
    outputs = {k: v.numpy() for k, v in serve(**feed).items()}
    np.savez(Path(export_dir) / "outputs.npz", **outputs)
    return {"path": "outputs.npz", "rows": 8, "outputs": sorted(outputs)}


NPZ_OUTPUTS = api.ExportFormat(name="npz_outputs", file="outputs.npz", writer="automtl_everything:write_outputs",
                               doc="the SavedModel's outputs on validation rows")


class LevelsTsv(api.PredictionFormat):
    """``automtl predict --format levels_tsv``: a header of output names, then one tab-separated line per row."""

    suffixes = (".tsv",)
    writes = "tab-separated lines"

    def check(self, manifest):
        return None if manifest["tasks"] else "a model without tasks has nothing to write"

    def write(self, out, predictions):
        lines = ["\\t".join(predictions.order)]
        lines += ["\\t".join(f"{float(predictions.outputs[k][i]):.6f}" for k in predictions.order)
                  for i in range(predictions.rows)]
        Path(out).write_text("\\n".join(lines) + "\\n")
        return list(predictions.order)


def demo(folder):
    """Two levels of the same three columns, in a ``.nums`` file, searched with every member above."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 3))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    columns = {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "up": x @ [1.0, 0.5, 0.0], "down": x @ [0.0, -1.0, 2.0]}
    (folder / "levels.nums").write_text(json.dumps({k: v.round(5).tolist() for k, v in columns.items()}))
    (folder / "space.yaml").write_text(yaml.safe_dump({"parameters": {
        "sharing": "split_top", "split_top.shared": 1, "weighting": "first_first", "first_first.lead": 3.0,
        "strategy": {"choice": ["summed_steps", "joint"]}, "trunk.depth": 2, "trunk.units": 8, "batch_size": 32}}))
    (folder / "experiment.yaml").write_text(yaml.safe_dump({
        "name": "everything", "data": {"train": "levels.nums", "valid_fraction": 0.25},
        "inputs": [{"name": "xs", "type": "columns", "columns": ["a", "b", "c"]}],
        "tasks": [{"name": "up", "type": "level", "target": "up"}, {"name": "down", "type": "level", "target": "down"}],
        "space": "space.yaml",
        "search": {"backend": "round-robin", "algorithm": "cycle", "trials": 2, "epochs": 2, "pruner": "none",
                   "trials_per_process": 0, "baselines": "off", "ensemble": 0,
                   "export_formats": ["saved_model", "npz_outputs"]}}))
    return folder / "experiment.yaml"
'''

ENTRY_POINTS = {
    "automtl.readers": "nums = automtl_everything:NumsReader",
    "automtl.inputs": "columns = automtl_everything:ColumnsInput",
    "automtl.tasks": "level = automtl_everything:LevelTask",
    "automtl.sharing": "split_top = automtl_everything:SplitTop",
    "automtl.weightings": "first_first = automtl_everything:FirstFirst",
    "automtl.strategies": "summed_steps = automtl_everything:SummedSteps",
    "automtl.backends": "round-robin = automtl_everything:ROUND_ROBIN",
    "automtl.formats": "npz_outputs = automtl_everything:NPZ_OUTPUTS",
    "automtl.predictions": "levels_tsv = automtl_everything:LevelsTsv",
    "automtl.demos": "everything = automtl_everything:demo",
}


@pytest.fixture(scope="module")
def everything(tmp_path_factory):
    """The package installed in a site folder, and the environment that sees it."""
    from helpers import fake_distribution

    root = tmp_path_factory.mktemp("everything")
    site = fake_distribution(root, "automtl_everything", EVERYTHING, "0.3", "automtl.tasks", "")
    info = site / "automtl_everything-0.3.dist-info" / "entry_points.txt"
    info.write_text("".join(f"[{group}]\n{entry}\n\n" for group, entry in ENTRY_POINTS.items()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return root, env


def test_the_package_imports_only_the_public_api():
    import ast

    imported = {n.module for n in ast.walk(ast.parse(EVERYTHING)) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(ast.parse(EVERYTHING)) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in imported if m.startswith("automtl")} == {"automtl"}  # ``from automtl import api``
    assert "from automtl import api" in EVERYTHING


def test_every_axis_lists_the_third_party_member(everything):
    root, env = everything
    listed = subprocess.run([sys.executable, "-m", "automtl.cli", "plugins"], env={**env, "COLUMNS": "200"}, capture_output=True,
                            text=True, check=True, cwd=root)
    for group, entry in ENTRY_POINTS.items():
        assert entry.split(" = ")[0] in listed.stdout, (group, listed.stdout)
    assert listed.stdout.count("automtl-everything") >= len(ENTRY_POINTS)


@pytest.mark.e2e
def test_a_search_uses_a_third_party_member_of_every_axis(everything):
    root, env = everything
    run = root / "run"
    proc = subprocess.run([sys.executable, "-m", "automtl.cli", "search", "--demo", "everything", "--out", str(run),
                           "--quiet", "--no-report", *LEAN_FLAGS], env=env, capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trials = json.loads((run / "trials.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["complete", "complete"]
    # the round-robin backend gave trial 0 the third-party strategy and trial 1 the built-in one
    assert [t["params"]["strategy"] for t in trials] == ["summed_steps", "joint"]
    assert all(t["params"]["sharing"] == "split_top" and t["params"]["weighting"] == "first_first" for t in trials)
    snapshot = (run / "experiment.resolved.yaml").read_text()
    assert "round-robin" in snapshot and "levels.nums" in snapshot
    manifest = json.loads((run / "best" / "automtl.json").read_text())
    assert {t["type"] for t in manifest["tasks"]} == {"level"}
    assert manifest["formats"]["npz_outputs"]["path"] == "outputs.npz"
    outputs = np.load(run / "best" / "outputs.npz")
    assert set(outputs.files) == {"up.level", "down.level"} and outputs["up.level"].shape == (8,)
    # the sharing scheme's own layer names: the second trunk layer is each task's copy
    import keras

    from automtl.model import layers  # noqa: F401  (registers the trunk's layers for loading)

    names = {layer.name for layer in keras.saving.load_model(run / "best" / "model.keras").layers}
    assert {"trunk_dense0", "trunk_dense1-up", "trunk_dense1-down"} <= names and "trunk_dense1" not in names
    # the third-party prediction format writes what it wrote: the same numbers as the built-in table
    x = np.random.default_rng(1).normal(size=(5, 3)).round(4)
    (root / "new.nums").write_text(json.dumps({"a": x[:, 0].tolist(), "b": x[:, 1].tolist(), "c": x[:, 2].tolist()}))
    for fmt, out in (("levels_tsv", "levels.tsv"), ("table", "levels.csv")):
        proc = subprocess.run([sys.executable, "-m", "automtl.cli", "predict", str(run / "best"), "--data", "new.nums",
                               "--format", fmt, "--out", out], env=env, capture_output=True, text=True, cwd=root)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = (root / "levels.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["up.level", "down.level"] and len(lines) == 6
    import pandas as pd

    table = pd.read_csv(root / "levels.csv")
    written = np.array([[float(v) for v in line.split("\t")] for line in lines[1:]])
    np.testing.assert_allclose(written, table[["up.level", "down.level"]].to_numpy(), atol=1e-5)
    wrong = subprocess.run([sys.executable, "-m", "automtl.cli", "predict", str(run / "best"), "--data", "new.nums",
                            "--format", "levels_tsv", "--out", "levels.csv"], env=env, capture_output=True, text=True,
                           cwd=root)
    assert wrong.returncode == 2 and "--format levels_tsv writes tab-separated lines (.tsv)" in wrong.stderr
