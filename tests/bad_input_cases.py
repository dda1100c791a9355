"""The bad-input set: one row per mistake a user can make, with the exit code and what the message must name.

Shared by ``tests/test_bad_input.py`` (each case through the CLI, refused
before TensorFlow loads) and ``bench/bad_input_speed.py`` (each case as a
fresh ``automtl`` process, timed). A :class:`Workspace` holds the files the
cases point at: a good data file, space and experiment to spoil one thing
at a time, a run folder owned by an Optuna study, an exported-model folder.
Nothing here trains: the run and model folders are written the way
``automtl search``/``export`` write them, minus the models.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

#: The tiny space of the test suite (kept here so the bench needs no pytest).
SPACE = {
    "parameters": {
        "trunk.depth": {"int": [1, 2]},
        "trunk.units": {"choice": [16, 32]},
        "strategy": {"choice": ["joint", "alternating"]},
        "learning_rate": {"float": [3e-3, 1e-2], "log": True},
        "batch_size": 32,
    },
    "per_task": {"head.units": {"choice": [8, 16]}, "head.depth": 1,
                 "loss_weight": {"float": [0.5, 2.0], "when": {"strategy": "joint"}}},
}


def frame(n: int = 120, seed: int = 0) -> Any:
    """Numeric and categorical features; a regression and a classification target."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    out = pd.DataFrame(x, columns=[f"x{i}" for i in range(4)])
    out["city"] = rng.choice(["north", "south", "east"], size=n)
    out["price"] = 50 + 10 * x[:, 0] + rng.normal(size=n)
    out["kind"] = np.where(x[:, 2] > 0, "premium", "basic")
    return out


class Workspace:
    """Files for the cases, under ``root``; each case spoils one thing in its own file."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.data = self.csv("data.csv", frame())
        self.space_path = self.root / "space.yaml"
        self.space_path.write_text(yaml.safe_dump(SPACE))
        self.good = self.experiment("good.yaml")
        self._run: Path | None = None
        self._model: Path | None = None

    # -- files ------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.root / name

    def csv(self, name: str, table: Any) -> Path:
        path = self.root / name
        table.to_csv(path, index=False)
        return path

    def data_with(self, name: str, change: Callable[[Any], Any]) -> Path:
        """A copy of the good data with ``change(frame)`` applied."""
        table = frame()
        table = change(table) if change is not None else table
        return self.csv(name, table if table is not None else frame())

    def experiment_dict(self, **updates: Any) -> dict[str, Any]:
        exp = {
            "name": "tiny",
            "data": {"train": str(self.data), "valid_fraction": 0.25},
            "inputs": [{"name": "features", "type": "tabular", "numeric": ["x*"], "categorical": ["city"]}],
            "tasks": [{"name": "price", "type": "regression", "target": "price"},
                      {"name": "kind", "type": "classification", "target": "kind"}],
            "space": str(self.space_path),
            "search": {"trials": 2, "epochs": 2, "trials_per_process": 0, "out": str(self.root / "fresh")},
        }
        exp.update(updates)
        return exp

    def experiment(self, filename: str, **updates: Any) -> Path:
        path = self.root / filename
        path.write_text(yaml.safe_dump(self.experiment_dict(**updates)))
        return path

    def search_settings(self, name: str, **search: Any) -> Path:
        base = self.experiment_dict()["search"]
        return self.experiment(name, search={**base, **search})

    def with_data(self, name: str, change: Callable[[Any], Any], **updates: Any) -> Path:
        data = self.data_with(name.replace(".yaml", ".csv"), change)
        return self.experiment(name, data={"train": str(data), "valid_fraction": 0.25}, **updates)

    def space(self, name: str, raw: Any) -> Path:
        """An experiment whose space file is ``raw`` (a mapping, or text written as it is)."""
        space = self.root / f"space_{name}"
        space.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
        return self.experiment(name, space=str(space))

    def space_params(self, name: str, **params: Any) -> Path:
        return self.space(name, {**SPACE, "parameters": {**SPACE["parameters"], **params}})

    # -- a run folder and an exported model, written as the commands write them ---------------
    @property
    def run(self) -> Path:
        """A run folder owned by the Optuna study 'tiny' (objective mean), with two trials recorded."""
        if self._run is None:
            from automtl.config import load_experiment
            from automtl.core.trial import TrialRecord
            from automtl.rundir.folder import record_owner, write_snapshot
            from automtl.rundir.results import write_trials_csv, write_trials_json

            run = self.root / "owned_run"
            run.mkdir(exist_ok=True)
            exp = load_experiment(self.good, {"out": run})
            record_owner(exp, run)
            write_snapshot(exp, self.space_path, run)
            records = [TrialRecord(n, "complete", 0.5 + n / 10, {"trunk.depth": 1}, {"price.rmse": 1.0 - n / 10},
                                   1.0, "cpu", best_epoch=1, scores={"price": 0.4, "kind": 0.6}) for n in range(2)]
            tasks = [{"name": "price", "type": "regression", "primary_metric": "rmse", "direction": "minimize",
                      "importance": 1.0},
                     {"name": "kind", "type": "classification", "primary_metric": "accuracy",
                      "direction": "maximize", "importance": 1.0}]
            write_trials_csv(records, run / "trials.csv")
            write_trials_json(records, run / "trials.json", tasks=tasks, objective="mean", experiment="tiny")
            self._run = run
        return self._run

    @property
    def model(self) -> Path:
        """An exported-model folder: the manifest ``predict`` reads (refusals never reach the SavedModel)."""
        if self._model is None:
            model = self.root / "model"
            (model / "saved_model").mkdir(parents=True, exist_ok=True)
            manifest = {
                "inputs": [{"name": "features", "dtype": "float32", "shape": [None, 4],
                            "columns": ["x0", "x1", "x2", "x3"]},
                           {"name": "city", "dtype": "string", "shape": [None], "columns": ["city"]}],
                "tasks": [{"name": "price", "type": "regression", "outputs": ["price.value"]}],
            }
            (model / "automtl.json").write_text(json.dumps(manifest))
            self._model = model
        return self._model

    def folder(self, name: str, files: dict[str, str] | None = None) -> Path:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        for rel, text in (files or {}).items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
        return folder

    def file(self, name: str, text: str = "x") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


@dataclass(frozen=True)
class Case:
    """One bad input: the CLI arguments (built in a workspace), the exit code and the message's fragments."""

    id: str
    args: Callable[[Workspace], list[Any]]
    fragments: tuple[str, ...]
    code: int = 2
    #: a fragment the output must not hold (a password)
    hidden: str = ""
    #: skip unless this module is installed (an optional extra)
    needs: str = ""
    #: a refusal on a machine without a GPU (skipped where a GPU is seen)
    no_gpu: bool = False


def search(config: Callable[[Workspace], Path], *extra: Any) -> Callable[[Workspace], list[Any]]:
    return lambda w: ["search", "--config", config(w), *[e(w) if callable(e) else e for e in extra]]


def good(*extra: Any) -> Callable[[Workspace], list[Any]]:
    return lambda w: ["search", "--config", w.good, *[e(w) if callable(e) else e for e in extra]]


def set_cell(column: str, value: Any, row: int = 7) -> Callable[[Any], Any]:
    def change(t: Any) -> Any:
        t[column] = t[column].astype(object) if isinstance(value, str) else t[column]
        t.loc[row, column] = value
        return t
    return change


def sqlite_garbage(w: Workspace) -> str:
    path = w.file("garbage.db", "this is not a database, just text " * 20)
    return f"sqlite:///{path}"


def sqlite_ok(w: Workspace) -> Path:
    path = w.path("real.db")
    sqlite3.connect(path).close()
    return path


CASES: list[Case] = [
    # -- the experiment file ----------------------------------------------------------------
    Case("experiment-missing", lambda w: ["search", "--config", w.path("nope.yaml")], ("experiment file not found", "nope.yaml")),
    Case("experiment-is-folder", lambda w: ["search", "--config", w.folder("a_folder.yaml")], ("is a folder", "a_folder.yaml")),
    Case("experiment-malformed-yaml", lambda w: ["search", "--config", w.file("bad.yaml", "data: [unclosed\ntasks: 3\n")],
         ("bad.yaml", "malformed YAML", "line")),
    Case("experiment-not-a-mapping", lambda w: ["search", "--config", w.file("list.yaml", "- a\n- b\n")],
         ("list.yaml", "expected a mapping")),
    Case("experiment-missing-tasks", search(lambda w: _without(w, "no_tasks.yaml", "tasks")), ("no_tasks.yaml", "tasks", "Field required")),
    Case("experiment-unknown-key", search(lambda w: w.experiment("typo.yaml", tsaks=[])), ("typo.yaml", "tsaks", "unknown key")),
    Case("experiment-no-inputs", search(lambda w: w.experiment("no_inputs.yaml", inputs=[])), ("no_inputs.yaml", "inputs")),
    Case("task-type-unknown", search(lambda w: w.experiment("seg.yaml", tasks=[{"name": "t", "type": "segmentation"}])),
         ("unknown task type 'segmentation'", "regression")),
    Case("input-type-unknown", search(lambda w: w.experiment("audio.yaml", inputs=[{"name": "f", "type": "audio"}])),
         ("unknown input type 'audio'", "tabular")),
    Case("task-option-typo", search(lambda w: w.experiment("colour.yaml", tasks=[
        {"name": "price", "type": "regression", "target": "price", "colour": "red"}])), ("task 'price'", "colour")),
    Case("tabular-without-columns", search(lambda w: w.experiment("nocols.yaml", inputs=[{"name": "f", "type": "tabular"}])),
         ("input 'f'", "at least one column")),
    Case("task-name-with-space", search(lambda w: w.experiment("tname.yaml", tasks=[
        {"name": "my price", "type": "regression", "target": "price"}])), ("tname.yaml", "tasks.0.name")),
    Case("task-names-duplicated", search(lambda w: w.experiment("dup.yaml", tasks=[
        {"name": "p", "type": "regression", "target": "price"}, {"name": "p", "type": "classification", "target": "kind"}])),
         ("duplicate names", "'p'")),
    Case("name-escapes-runs", search(lambda w: w.experiment("escape.yaml", name="../../escaped")),
         ("escape.yaml", "name", "must be a name", "'../../escaped'")),
    Case("name-absolute-path", search(lambda w: w.experiment("absname.yaml", name="/tmp/escaped")), ("must be a name", "/tmp/escaped")),
    Case("name-leading-dot", search(lambda w: w.experiment("dot.yaml", name=".hidden")), ("must be a name", "no leading dot")),
    Case("importance-zero", search(lambda w: w.experiment("imp0.yaml", tasks=[
        {"name": "price", "type": "regression", "target": "price", "importance": 0}])), ("importance", "greater than 0")),
    Case("importance-infinite", search(lambda w: w.experiment("impinf.yaml", tasks=[
        {"name": "price", "type": "regression", "target": "price", "importance": float("inf")}])), ("importance", "finite")),
    Case("valid-fraction-above-one", search(lambda w: w.experiment("frac.yaml", data={"train": str(w.data), "valid_fraction": 1.5})),
         ("data.valid_fraction", "between 0 and 1")),
    # -- splits: groups and folds (issue 19) ---------------------------------------------------
    Case("group-column-missing", search(lambda w: w.experiment("group.yaml", data={
        "train": str(w.data), "valid_fraction": 0.25, "group": "patient"})), ("data.csv", "no column 'patient'", "data.group")),
    Case("group-pattern-not-regex", search(lambda w: w.experiment("grouprx.yaml", data={
        "train": str(w.data), "group": {"column": "city", "pattern": "("}})), ("grouprx.yaml", "data.group.pattern", "not a regular expression"),
         hidden="valid string"),
    Case("group-pattern-no-match", search(lambda w: w.experiment("groupmiss.yaml", data={
        "train": str(w.data), "group": {"column": "city", "pattern": "^west"}})), ("data.csv", "row 1", "does not match 'north'")),
    Case("groups-too-few-for-fraction", search(lambda w: w.experiment("group1.yaml", data={
        "train": str(w.data), "valid_fraction": 0.1, "group": "city"})), ("3 group(s) cannot be split", "valid_fraction=0.1")),
    Case("folds-one", search(lambda w: w.experiment("folds1.yaml", data={"train": str(w.data), "folds": 1})),
         ("data.folds", "greater than or equal to 2")),
    Case("folds-more-than-groups", search(lambda w: w.experiment("folds5.yaml", data={
        "train": str(w.data), "folds": 5, "group": "city"})), ("3 groups cannot make data.folds=5",)),
    Case("folds-with-valid-file", search(lambda w: w.experiment("foldsvalid.yaml", data={
        "train": str(w.data), "valid": str(w.data), "folds": 3})), ("'folds' cross-validates the training file", "remove 'valid'")),
    Case("pruner-unknown-in-file", search(lambda w: w.search_settings("pruner.yaml", pruner="bohb")), ("search.pruner", "'bohb'")),
    Case("pruner-on-keras-tuner", good("--backend", "keras-tuner", "--pruner", "median"), ("keras-tuner", "median")),
    Case("fidelity-rows-on-keras-tuner", good("--backend", "keras-tuner", "--fidelity", "rows"),
         ("search.fidelity 'rows'", "keras-tuner", "cannot run a configuration again on more rows")),
    Case("fidelity-unknown-in-file", search(lambda w: w.search_settings("fidelity.yaml", fidelity="epochs")),
         ("search.fidelity", "'epochs'")),
    Case("trials-zero-in-file", search(lambda w: w.search_settings("trials0.yaml", trials=0)), ("search.trials", "greater than or equal to 1")),
    Case("epochs-negative-in-file", search(lambda w: w.search_settings("epochs.yaml", epochs=-3)), ("search.epochs",)),
    Case("device-unknown", search(lambda w: w.search_settings("tpu.yaml", device="tpu")), ("search.device", "'tpu'")),
    Case("backend-unknown", search(lambda w: w.search_settings("ray.yaml", backend="ray")), ("unknown backend 'ray'", "optuna")),
    Case("pareto-with-one-task", search(lambda w: w.experiment("onetask.yaml", tasks=[
        {"name": "price", "type": "regression", "target": "price"}]), "--objective", "pareto"), ("at least two tasks",)),
    Case("pareto-on-keras-tuner", good("--backend", "keras-tuner", "--objective", "pareto"),
         ("objective 'pareto'", "multi-objective backend")),
    Case("algorithm-unknown", good("--algorithm", "cmaes"), ("cmaes", "tpe", "random")),
    Case("workers-zero-in-file", search(lambda w: w.search_settings("workers.yaml", workers=0)), ("search.workers", "positive")),
    # -- the command line -------------------------------------------------------------------
    Case("config-and-demo-missing", lambda w: ["search"], ("exactly one of --config FILE or --demo NAME",)),
    Case("config-and-demo-both", lambda w: ["search", "--config", w.good, "--demo", "digits"], ("exactly one of",)),
    Case("study-escapes-run", good("--study", "../../x"), ("study name (--study)", "must be a name", "'../../x'")),
    Case("study-with-separator", good("--study", "a/b"), ("study name (--study)", "no path separator")),
    Case("trials-zero-option", good("--trials", "0"), ("--trials", "0")),
    Case("workers-not-a-number", good("--workers", "many"), ("--workers", "positive number or 'auto'")),
    Case("demo-unknown", lambda w: ["search", "--demo", "mnist"], ("--demo", "'mnist'")),
    # -- the data ---------------------------------------------------------------------------
    Case("data-missing", search(lambda w: w.experiment("nodata.yaml", data={"train": str(w.path("gone.csv"))})),
         ("training data file not found", "gone.csv")),
    Case("data-is-folder", search(lambda w: w.experiment("datadir.yaml", data={"train": str(w.folder("csvdir.csv"))})),
         ("is a folder", "csvdir.csv")),
    Case("data-unsupported-format", search(lambda w: w.experiment("xlsx.yaml", data={"train": str(w.file("data.xlsx"))})),
         ("data.xlsx", "unsupported")),
    Case("data-header-only", search(lambda w: w.experiment("hdr.yaml", data={
        "train": str(w.file("header.csv", "x0,x1,x2,x3,city,price,kind\n"))})), ("header.csv", "no rows")),
    Case("data-empty-file", search(lambda w: w.experiment("zero.yaml", data={"train": str(w.file("zero.csv", ""))})),
         ("zero.csv", "empty")),
    Case("data-too-few-rows-to-split", search(lambda w: w.experiment("onerow.yaml", data={
        "train": str(w.file("onerow.csv", "x0,x1,x2,x3,city,price,kind\n1,2,3,4,north,5,basic\n"))})),
         ("onerow.csv", "cannot be split")),
    Case("target-column-missing", search(lambda w: w.experiment("cost.yaml", tasks=[
        {"name": "price", "type": "regression", "target": "cost"}])), ("no column 'cost'", "task 'price'", "data.csv")),
    Case("input-column-missing", search(lambda w: w.experiment("height.yaml", inputs=[
        {"name": "f", "type": "tabular", "numeric": ["x0", "height"]}])), ("no column 'height'", "input 'f'")),
    Case("columns-missing-at-once", search(lambda w: w.experiment("several.yaml", inputs=[
        {"name": "f", "type": "tabular", "numeric": ["x0", "hieght", "x9"], "categorical": ["cty"]}], tasks=[
        {"name": "price", "type": "regression", "target": "prise"}])),
         ("4 columns missing", "'hieght' (needed by input 'f')", "'x9'", "did you mean 'city'?", "'prise' (needed by task "
          "'price'; did you mean 'price'?)")),
    Case("input-glob-matches-nothing", search(lambda w: w.experiment("glob.yaml", inputs=[
        {"name": "f", "type": "tabular", "numeric": ["z*"]}])), ("no column 'z*'", "input 'f'")),
    Case("validation-file-lacks-column", search(lambda w: w.experiment("vcol.yaml", data={
        "train": str(w.data), "valid": str(w.data_with("valid_nokind.csv", lambda t: t.drop(columns=["kind"])))})),
         ("valid_nokind.csv", "no column 'kind'")),
    Case("regression-target-text", search(lambda w: w.experiment("city.yaml", tasks=[
        {"name": "price", "type": "regression", "target": "city"}])), ("column 'city'", "must be numeric")),
    Case("numeric-input-text", search(lambda w: w.with_data("textcell.yaml", set_cell("x1", "twelve"))),
         ("column 'x1'", "must be numeric", "'twelve'")),
    Case("feature-infinite", search(lambda w: w.with_data("inf_x.yaml", set_cell("x2", float("inf")))),
         ("column 'x2'", "infinite value", "input 'features'")),
    Case("regression-target-infinite", search(lambda w: w.with_data("inf_y.yaml", set_cell("price", float("-inf")))),
         ("column 'price'", "task 'price'", "infinite value", "row 8")),
    Case("classification-target-infinite", search(lambda w: w.with_data("inf_class.yaml", _numeric_kind_with_inf)),
         ("task 'kind'", "infinite")),
    Case("classification-single-class", search(lambda w: w.with_data("oneclass.yaml", lambda t: t.assign(kind="basic"))),
         ("task 'kind'", "at least two classes")),
    Case("classification-target-all-empty", search(lambda w: w.with_data("nolabels.yaml", lambda t: t.assign(kind=None))),
         ("task 'kind'", "empty in every row")),
    Case("regression-target-all-empty", search(lambda w: w.with_data("noprice.yaml", lambda t: t.assign(price=np.nan))),
         ("task 'price'", "no values")),
    Case("classification-fractional-labels", search(lambda w: w.with_data("frac_kind.yaml", lambda t: t.assign(kind=t["x0"]))),
         ("task 'kind'", "non-integer")),
    Case("categorical-column-in-two-inputs", search(lambda w: w.experiment("twocity.yaml", inputs=[
        {"name": "a", "type": "tabular", "numeric": ["x0"], "categorical": ["city"]},
        {"name": "b", "type": "tabular", "numeric": ["x1"], "categorical": ["city"]}])),
         ("input 'a'", "input 'b'", "'city'")),
    Case("numeric-column-in-two-inputs", search(lambda w: w.experiment("twox.yaml", inputs=[
        {"name": "a", "type": "tabular", "numeric": ["x0", "x1"]},
        {"name": "b", "type": "tabular", "numeric": ["x1", "x2"]}])), ("column 'x1'", "input 'a'", "input 'b'")),
    # -- the search space -------------------------------------------------------------------
    Case("space-missing", search(lambda w: w.experiment("nospace.yaml", space=str(w.path("nospace_file.yaml")))),
         ("search space file not found", "nospace_file.yaml")),
    Case("space-malformed-yaml", search(lambda w: w.space("malformed.yaml", "parameters: {a: [1\n")),
         ("space_malformed.yaml", "malformed YAML")),
    Case("space-unknown-top-level-key", search(lambda w: w.space("top.yaml", {"params": {}})), ("unknown top-level key", "params")),
    Case("space-unknown-parameter", search(lambda w: w.space_params("unk.yaml", **{"trunk.widht": 3})),
         ("parameters.trunk.widht", "unknown parameter")),
    Case("space-unknown-kind", search(lambda w: w.space_params("kind.yaml", **{"trunk.depth": {"integer": [1, 3]}})),
         ("trunk.depth", "unknown parameter kind 'integer'")),
    Case("space-empty-range", search(lambda w: w.space_params("empty.yaml", learning_rate={"float": [0.01, 0.001]})),
         ("learning_rate", "empty range")),
    Case("space-negative-learning-rate", search(lambda w: w.space_params("neglr.yaml", learning_rate={"float": [-0.1, 0.01]})),
         ("learning_rate", "out of range", "> 0")),
    Case("space-batch-size-text", search(lambda w: w.space_params("bs.yaml", batch_size="abc")), ("batch_size", "'abc'")),
    Case("space-batch-size-zero", search(lambda w: w.space_params("bs0.yaml", batch_size={"int": [0, 64]})),
         ("batch_size", "out of range", ">= 1")),
    Case("space-dropout-one", search(lambda w: w.space_params("drop.yaml", dropout={"float": [0.0, 1.0]})),
         ("dropout", "[0, 1)")),
    Case("space-log-range-from-zero", search(lambda w: w.space_params("log0.yaml", l2={"float": [0.0, 0.1], "log": True})),
         ("l2", "log-scaled range needs low > 0")),
    Case("space-units-fractional", search(lambda w: w.space_params("units.yaml", **{"trunk.units": {"float": [8, 64]}})),
         ("trunk.units", "whole numbers")),
    Case("space-infinite-bound", search(lambda w: w.space_params("infb.yaml", learning_rate={"float": [0.001, float("inf")]})),
         ("learning_rate", "finite")),
    Case("space-unknown-sharing", search(lambda w: w.space_params("share.yaml", sharing={"choice": ["hard", "adashare"]})),
         ("sharing", "'adashare'")),
    Case("space-unknown-strategy-blamed-on-strategy", search(lambda w: w.space(
        "strat.yaml", {"parameters": {"strategy": {"choice": ["joint", "sequential"]}},
                       "per_task": {"task_prob": {"float": [0.5, 2.0], "when": {"strategy": "alternating"}}}})),
         ("strategy: unknown value 'sequential'",)),
    Case("space-plugin-parameter-out-of-range", search(lambda w: _text_experiment(w, "text_emb.yaml", {
        "text.embedding": {"choice": [0, 32]}})), ("text.embedding", "out of range", ">= 1")),
    Case("space-when-unknown-parent", search(lambda w: w.space_params("when.yaml", dropout={
        "float": [0.0, 0.5], "when": {"optimizer": "adam"}})), ("dropout", "'when' refers to 'optimizer'")),
    Case("space-list-is-ambiguous", search(lambda w: w.space_params("list.yaml", **{"trunk.units": [16, 32]})),
         ("trunk.units", "a list is ambiguous")),
    # -- the run folder and the study storage -----------------------------------------------
    Case("out-is-a-file", good("--out", lambda w: w.file("out_file")), ("output folder", "is a file")),
    Case("out-below-a-file", good("--out", lambda w: w.file("blocker") / "run"), ("output folder", "cannot be written")),
    Case("out-holds-other-files", good("--out", lambda w: w.folder("photos", {"holiday.jpg": "jpeg"})),
         ("output folder", "holiday.jpg", "not an automtl run")),
    Case("out-inside-a-run", good("--out", lambda w: w.run / "trials"), ("lies inside the run folder", "owned_run")),
    Case("run-owned-by-other-backend", good("--out", lambda w: w.run, "--backend", "keras-tuner"),
         ("owned_run", "holds the optuna study 'tiny'", "backend keras-tuner", "--out")),
    Case("run-owned-by-other-objective", good("--out", lambda w: w.run, "--objective", "pareto"),
         ("owned_run", "objective mean", "objective pareto", "--out")),
    Case("run-owned-by-other-study", good("--out", lambda w: w.run, "--study", "other"),
         ("owned_run", "study 'other'", "--out")),
    Case("run-owned-other-storage", good("--out", lambda w: w.run, "--storage", lambda w: f"sqlite:///{sqlite_ok(w)}"),
         ("owned_run", "storage sqlite:///", "--out")),
    Case("storage-server-unreachable", good("--storage", "postgresql://bob:s3cret@127.0.0.1:1/db"),
         ("cannot open study storage", "127.0.0.1"), hidden="s3cret"),
    Case("storage-sqlite-folder-missing", good("--storage", lambda w: f"sqlite:///{w.path('no/such/dir/study.db')}"),
         ("--storage", "no/such/dir", "not found")),
    Case("storage-sqlite-not-a-database", good("--storage", sqlite_garbage), ("garbage.db", "not a readable SQLite database")),
    Case("storage-sqlite-in-memory", good("--storage", "sqlite:///:memory:"), ("in-memory",)),
    Case("storage-unknown-database", good("--storage", "nosuchdb://u@host/db"), ("--storage", "nosuchdb")),
    Case("storage-journal-is-folder", good("--storage", lambda w: w.folder("dir.journal")), ("dir.journal", "is a folder")),
    Case("storage-with-keras-tuner", good("--backend", "keras-tuner", "--storage", "sqlite:///x.db"),
         ("--storage", "Optuna backend's")),
    Case("workers-with-keras-tuner", good("--backend", "keras-tuner", "--workers", "2"),
         ("--workers 2", "keras-tuner", "chief and workers")),
    Case("keras-tuner-project-other-algorithm", good("--out", lambda w: _kt_run(w), "--backend", "keras-tuner", "--algorithm", "random"),
         ("started with --algorithm bayesian", "--out")),
    Case("demo-over-another-demo", lambda w: ["search", "--demo", "digits", "--out", w.folder(
        "textdemo", {"data/.automtl-demo": "text\n", "data/experiment.yaml": "name: text\n"})], ("holds demo 'text'", "digits")),
    # -- report, trials, export, dashboard --------------------------------------------------
    Case("report-run-missing", lambda w: ["report", w.path("no_run")], ("run folder not found", "no_run")),
    Case("report-not-a-run", lambda w: ["report", w.folder("plain")], ("plain", "expected a run folder")),
    Case("report-out-over-run-file", lambda w: ["report", w.run, "--out", w.run / "trials.csv"],
         ("--out", "report is an HTML file")),
    Case("report-out-over-run-html", lambda w: ["report", w.run, "--out", w.file("owned_run/trials/notes.html", "mine")],
         ("would overwrite a file of the run folder",)),
    Case("report-out-is-folder", lambda w: ["report", w.run, "--out", w.folder("report_dir.html")], ("is a folder",)),
    Case("trials-run-missing", lambda w: ["trials", w.path("no_run")], ("run folder not found",)),
    Case("trials-sort-unknown", lambda w: ["trials", w.run, "--sort", "nonsense"], ("--sort 'nonsense'", "score")),
    Case("trials-top-zero", lambda w: ["trials", w.run, "--top", "0"], ("--top",)),
    Case("export-run-missing", lambda w: ["export", w.path("no_run"), "--trial", "0", "--out", w.path("exp_out")],
         ("run folder not found",)),
    Case("export-trial-unknown", lambda w: ["export", w.run, "--trial", "42", "--out", w.path("exp_out")],
         ("no trial 42", "exportable trials")),
    Case("export-trial-and-baseline", lambda w: ["export", w.run, "--trial", "0", "--baseline", "price", "--out",
                                                 w.path("exp_out")], ("at most one of --ensemble, --trial N or --baseline TASK",)),
    Case("export-best-missing", lambda w: ["export", w.run, "--out", w.path("exp_out")],
         ("best does not exist", "--trial N")),
    Case("export-ensemble-missing", lambda w: ["export", w.run, "--ensemble", "--out", w.path("exp_out")],
         ("ensemble does not exist", "fewer than 2 trials completed", "--trial N")),
    Case("export-baseline-none-in-run", lambda w: ["export", w.run, "--baseline", "price", "--out", w.path("exp_out")],
         ("no single-task baselines", "baselines.json")),
    Case("export-baseline-unknown-task", lambda w: ["export", _kept_run(w), "--baseline", "nobody", "--out",
                                                    w.path("exp_out")], ("no baseline for task 'nobody'", "price")),
    # -- baselines, ensemble, distill ------------------------------------------------------------
    Case("ensemble-negative", good("--ensemble", "-1"), ("--ensemble",)),
    Case("ensemble-negative-in-file", search(lambda w: w.search_settings("ens_neg.yaml", ensemble=-1)),
         ("search.ensemble", "greater than or equal to 0")),
    Case("baselines-unknown", good("--baselines", "always"), ("--baselines", "auto", "search", "off")),
    Case("baselines-unknown-in-file", search(lambda w: w.search_settings("bl_bad.yaml", baselines="always")),
         ("search.baselines",)),
    Case("baseline-trials-zero", good("--baselines", "search", "--baseline-trials", "0"), ("--baseline-trials",)),
    Case("distill-run-missing", lambda w: ["distill", w.path("no_run"), "--out", w.path("student")],
         ("run folder not found",)),
    Case("distill-not-a-run", lambda w: ["distill", w.folder("plain"), "--out", w.path("student")],
         ("no trials.json", "expected a run folder")),
    Case("distill-no-kept-model", lambda w: ["distill", w.run, "--out", w.path("student")],
         ("no completed trial with a kept model",)),
    Case("distill-teacher-unknown", lambda w: ["distill", _kept_run(w), "--out", w.path("student"), "--teacher", "nobody"],
         ("--teacher 'nobody'", "ensemble, best")),
    Case("distill-student-missing", lambda w: ["distill", _kept_run(w), "--out", w.path("student"), "--student",
                                               w.path("no_student_space.yaml")], ("--student", "not found")),
    Case("distill-temperature-zero", lambda w: ["distill", _kept_run(w), "--out", w.path("student"), "--temperature", "0"],
         ("--temperature 0", "positive")),
    Case("distill-epochs-zero", lambda w: ["distill", _kept_run(w), "--out", w.path("student"), "--epochs", "0"],
         ("--epochs 0", "positive")),
    Case("distill-init-unknown", lambda w: ["distill", _kept_run(w), "--out", w.path("student"), "--init", "warm"],
         ("--init 'warm'", "trial, scratch")),
    Case("distill-no-ensemble", lambda w: ["distill", _kept_run(w, ensemble=False), "--out", w.path("student")],
         ("no ensemble here", "--teacher best")),
    Case("distill-out-is-a-run", lambda w: ["distill", _kept_run(w), "--out", w.run], ("is the run folder", "owned_run")),
    Case("distill-out-user-folder", lambda w: ["distill", _kept_run(w), "--out", w.folder("mine", {"notes.txt": "x"})],
         ("exists and is not an earlier automtl export", "--force")),
    Case("dashboard-not-a-run", lambda w: ["dashboard", w.folder("plain")], ("plain",), needs="optuna_dashboard"),
    # -- predict ----------------------------------------------------------------------------
    Case("predict-model-missing", lambda w: ["predict", w.path("no_model"), "--data", w.data, "--out", w.path("p.csv")],
         ("model folder not found", "no_model")),
    Case("predict-not-a-model", lambda w: ["predict", w.folder("plain"), "--data", w.data, "--out", w.path("p.csv")],
         ("expected an exported model folder",)),
    Case("predict-manifest-unreadable", lambda w: ["predict", _broken_model(w), "--data", w.data, "--out", w.path("p.csv")],
         ("automtl.json", "not a readable automtl manifest")),
    Case("predict-data-missing", lambda w: ["predict", w.model, "--data", w.path("none.csv"), "--out", w.path("p.csv")],
         ("data file not found", "none.csv")),
    Case("predict-column-missing", lambda w: ["predict", w.model, "--data", w.data_with("nox3.csv", lambda t: t.drop(columns=["x3"])),
                                              "--out", w.path("p.csv")], ("no column 'x3'", "model input 'features'")),
    Case("predict-columns-missing-at-once", lambda w: ["predict", w.model, "--data", w.data_with(
        "nocols.csv", lambda t: t.drop(columns=["x1", "x3"]).rename(columns={"city": "cty"})), "--out", w.path("p.csv")],
         ("3 columns missing", "'x1' (needed by model input 'features'", "'x3'", "'city'", "did you mean 'cty'?")),
    Case("predict-text-in-numeric", lambda w: ["predict", w.model, "--data", w.data_with("ptext.csv", set_cell("x0", "abc")),
                                               "--out", w.path("p.csv")], ("column 'x0'", "'abc' is not a number")),
    Case("predict-keep-missing", lambda w: ["predict", w.model, "--data", w.data, "--out", w.path("p.csv"), "--keep", "id"],
         ("--keep column(s) not found: id",)),
    Case("predict-out-unsupported", lambda w: ["predict", w.model, "--data", w.data, "--out", w.path("p.xlsx")],
         ("unsupported output type '.xlsx'",)),
    Case("predict-out-is-folder", lambda w: ["predict", w.model, "--data", w.data, "--out", w.folder("outdir.csv")],
         ("outdir.csv", "is a folder")),
    Case("predict-out-is-the-data", lambda w: ["predict", w.model, "--data", w.data, "--out", w.data], ("is the --data file",)),
    Case("predict-out-over-run-file", lambda w: ["predict", w.model, "--data", w.data, "--out", w.run / "trials.csv"],
         ("lies inside the run folder", "owned_run")),
    Case("predict-out-below-a-file", lambda w: ["predict", w.model, "--data", w.data, "--out", w.file("pblock") / "p.csv"],
         ("cannot be written", "pblock")),
    Case("predict-coco-out-not-json", lambda w: ["predict", w.model, "--data", w.data, "--out", w.path("p.csv"),
                                                 "--format", "coco"], ("--format coco writes a JSON file",)),
    Case("predict-coco-without-detection", lambda w: ["predict", w.model, "--data", w.data, "--out", w.path("p.json"),
                                                      "--format", "coco"], ("one detection task",)),
    Case("predict-format-unknown", lambda w: ["predict", w.model, "--data", w.data, "--out", w.path("p.csv"),
                                              "--format", "xml"],
         ("--format xml", "unknown prediction format", "installed: coco, table")),
    Case("predict-root-missing", lambda w: ["predict", w.model, "--data", w.data, "--out", w.path("p.csv"),
                                            "--root", w.path("no_root")], ("--root", "no_root", "folder not found")),
    Case("predict-folder-without-images", lambda w: ["predict", w.model, "--data", w.folder("no_images", {"a.txt": "x"}),
                                                     "--out", w.path("p.csv")], ("no_images", "no image files")),
    # -- pretrained weights and word vectors ------------------------------------------------
    Case("image-weights-missing", search(lambda w: _image_experiment(w, "imgw.yaml", weights="missing.weights.h5")),
         ("input 'img'", "option 'weights'", "missing.weights.h5", "not found")),
    Case("image-backbone-unknown", search(lambda w: _image_experiment(w, "imgb.yaml", backbone="vgg99")),
         ("input 'img'", "option 'backbone'", "mobilenet_v3_small")),
    Case("image-fine-tune-searched-unknown", search(lambda w: _image_experiment(
        w, "imgft.yaml", space={"parameters": {"image.fine_tune": {"choice": ["frozen", "sometimes"]}}})),
         ("image.fine_tune", "sometimes")),
    # -- issue 31: nothing written inside a run, its split verified, vectors checked, early refusals ----
    Case("export-out-run-best-forced", lambda w: ["export", w.run, "--trial", "0", "--out", w.run / "best", "--force"],
         ("--out", "lies inside the run folder", "even with --force", "owned_run-trial0")),
    Case("export-out-new-folder-in-run", lambda w: ["export", w.run, "--trial", "1", "--out", w.run / "newdir"],
         ("lies inside the run folder", "owned_run-trial1")),
    Case("export-baseline-out-in-run", lambda w: ["export", _kept_run(w), "--baseline", "price", "--out",
                                                  _kept_run(w) / "trials" / "mine"], ("lies inside", "kept_run-baseline-price")),
    Case("distill-out-inside-a-run", lambda w: ["distill", _kept_run(w), "--out", w.run / "student", "--force"],
         ("lies inside the run folder", "owned_run-student")),
    Case("predict-out-new-file-in-run", lambda w: ["predict", w.model, "--data", w.data, "--out", w.run / "preds.csv"],
         ("lies inside the run folder", "owned_run-predictions.csv")),
    Case("split-valid-rows-repeated", good("--out", lambda w: _split_run(w, "split_zero", valid_rows=[0] * 30)),
         ("split.json", "lists row 0 more than once", "another --out")),
    Case("split-valid-row-out-of-range", good("--out", lambda w: _split_run(w, "split_big", valid_rows=[3, 500])),
         ("split.json", "row 500", "outside", "another --out")),
    Case("split-valid-row-negative", good("--out", lambda w: _split_run(w, "split_neg", valid_rows=[-1, 4])),
         ("split.json", "row -1", "outside")),
    Case("split-valid-rows-empty", good("--out", lambda w: _split_run(w, "split_empty", valid_rows=[])),
         ("split.json", "valid_rows is empty")),
    Case("split-valid-rows-every-row", good("--out", lambda w: _split_run(w, "split_all", valid_rows=list(range(120)))),
         ("split.json", "leaving none to train on")),
    Case("split-valid-rows-not-numbers", good("--out", lambda w: _split_run(w, "split_text", valid_rows=["1", 2.5])),
         ("split.json", "not a readable split file", "whole row numbers")),
    Case("split-columns-changed", good("--out", lambda w: _split_run(w, "split_cols", columns=["x0", "x1", "x2", "x3",
                                                                                                "city", "price", "cost"])),
         ("data.csv", "columns changed", "gone: cost", "new: kind", "split.json")),
    Case("split-group-on-both-sides", search(lambda w: _grouped(w), "--out", lambda w: _split_run(
        w, "split_groups", experiment=_grouped(w), mix_group=True)), ("split.json", "splits group", "data.group")),
    Case("run-folder-in-use", good("--out", lambda w: _busy_run(w)), ("busy_run", "in use by another search", "PID")),
    Case("out-cannot-be-created", good("--out", "/proc/automtl-run"), ("/proc/automtl-run", "cannot be written")),
    Case("export-out-cannot-be-created", lambda w: ["export", _kept_run(w), "--trial", "0", "--out", "/proc/automtl-export"],
         ("--out /proc/automtl-export", "cannot be written")),
    Case("predict-out-cannot-be-created", lambda w: ["predict", w.model, "--data", w.data, "--out", "/proc/automtl.csv"],
         ("/proc/automtl.csv", "cannot be written")),
    Case("timeout-nan-option", good("--timeout", "nan"), ("--timeout", "nan", "finite"), hidden="search.timeout"),
    Case("timeout-inf-option", good("--timeout", "inf"), ("--timeout", "inf"), hidden="search.timeout"),
    Case("device-gpu-without-one", good("--device", "gpu"), ("--device gpu", "no GPU"), no_gpu=True),
    Case("precision-mixed-without-gpu", good("--precision", "mixed"), ("--precision mixed", "compute capability"),
         no_gpu=True),
    Case("text-embeddings-nan", search(lambda w: _vectors_experiment(w, "vec_nan.txt", "north 1 2 3\nsouth 1 nan 3\n")),
         ("vec_nan.txt", "line 2", "non-finite value (nan)")),
    Case("text-embeddings-inf-in-other-word", search(lambda w: _vectors_experiment(
        w, "vec_inf.txt", "north 1 2 3\nzebra inf 2 3\n")), ("vec_inf.txt", "line 2", "non-finite value (inf)")),
    Case("text-embeddings-dimensions-differ", search(lambda w: _vectors_experiment(
        w, "vec_dims.txt", "north 1 2 3\nsouth 1 2 3 4\n")), ("vec_dims.txt", "line 2", "4 numbers, expected 3")),
    Case("text-embeddings-empty", search(lambda w: _vectors_experiment(w, "vec_empty.txt", "")),
         ("vec_empty.txt", "holds no vectors")),
    Case("text-embeddings-missing", search(lambda w: w.experiment("emb.yaml", inputs=[
        {"name": "words", "type": "text", "column": "city", "embeddings": "missing_vectors.txt"}])),
         ("input 'words'", "option 'embeddings'", "missing_vectors.txt", "not found")),
]


def _image_experiment(w: Workspace, name: str, space: dict[str, Any] | None = None, **options: Any) -> Path:
    """An experiment on tiny NPZ images (``images.npz``) with these image input options (and space)."""
    data = w.path("images.npz")
    if not data.exists():
        rng = np.random.default_rng(0)
        np.savez(data, pixels=rng.integers(0, 255, size=(40, 8, 8), dtype=np.uint8), label=rng.integers(0, 2, 40))
    updates: dict[str, Any] = {}
    if space is not None:
        path = w.path(f"space_{name}")
        path.write_text(yaml.safe_dump(space))
        updates["space"] = str(path)
    return w.experiment(name, data={"train": str(data), "valid_fraction": 0.25},
                        inputs=[{"name": "img", "type": "image", "array": "pixels", **options}],
                        tasks=[{"name": "label", "type": "classification", "target": "label"}], **updates)


def _split_run(w: Workspace, name: str, experiment: Path | None = None, mix_group: bool = False,
               **changes: Any) -> Path:
    """A copy of the workspace's run whose ``split.json`` (made for ``experiment``) has ``changes``;
    ``mix_group``: one training row of another group joins the validation rows."""
    import shutil

    from automtl.config import load_experiment
    from automtl.data.readers import read_table
    from automtl.data.split import group_labels, make_split

    run = w.path(name)
    if not run.exists():
        shutil.copytree(w.run, run)
        exp = load_experiment(experiment or w.good)
        table = read_table(exp.path(exp.data.train), role="training data")
        doc = make_split(exp.data, table).to_json()
        if mix_group:
            groups = group_labels(table, exp.data.group_rule)
            other = next(i for i in range(len(table)) if groups[i] not in doc["valid_groups"])
            doc["valid_rows"] = sorted(doc["valid_rows"] + [other])
        doc.update(changes)
        (run / "split.json").write_text(json.dumps(doc))
    return run


def _busy_run(w: Workspace) -> Path:
    """A copy of the workspace's run held by a live search (a process holding its lock, killed at exit)."""
    import atexit
    import shutil
    import subprocess
    import sys

    run = w.path("busy_run")
    if not run.exists():
        shutil.copytree(w.run, run)
    if getattr(w, "_busy", None) is None:
        code = "import sys, time\nfrom automtl.rundir.lock import hold\nhold(sys.argv[1])\nprint(1, flush=True)\ntime.sleep(3600)"
        proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()
        atexit.register(proc.kill)
        w._busy = proc
    return run


def _grouped(w: Workspace) -> Path:
    return w.experiment("grouped.yaml", data={"train": str(w.data), "valid_fraction": 0.34, "group": "city"})


def _vectors_experiment(w: Workspace, name: str, text: str) -> Path:
    """An experiment whose text input reads the word vectors ``text`` (written to ``name``)."""
    vectors = w.file(name, text)
    return w.experiment(f"{name}.yaml", inputs=[{"name": "features", "type": "tabular", "numeric": ["x*"]},
                                                {"name": "words", "type": "text", "column": "city",
                                                 "embeddings": str(vectors)}])


def _without(w: Workspace, name: str, key: str) -> Path:
    exp = w.experiment_dict()
    del exp[key]
    path = w.path(name)
    path.write_text(yaml.safe_dump(exp))
    return path


def _kept_run(w: Workspace, ensemble: bool = True) -> Path:
    """A copy of the workspace's run whose trials kept their model files (empty: refusals never load them),
    with the single-task baselines recorded and, unless ``ensemble`` is False, an ensemble folder."""
    import shutil

    from automtl.core.trial import trial_dir

    run = w.path("kept_run" if ensemble else "kept_run_no_ensemble")
    if not run.exists():
        shutil.copytree(w.run, run)
        for number in (0, 1):
            folder = trial_dir(run, number)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "model.keras").write_text("")
        (run / "baselines.json").write_text(json.dumps({
            "mode": "auto", "best_trial": 1, "delta_m": 0.0, "trainings": 1, "seconds": 1.0,
            "tasks": [{"task": "price", "metric": "rmse", "direction": "minimize", "single": 1.0, "multi": 1.0,
                       "delta": 0.0, "interval": None, "verdict": "unclear", "trial": 1, "folder": "baselines/price",
                       "params": {}, "metrics": {}, "score": 0.5, "seconds": 1.0}]}))
        if ensemble:
            (run / "ensemble").mkdir()
            (run / "ensemble" / "automtl.json").write_text("{}")
    return run


def _kt_run(w: Workspace) -> Path:
    """A run folder whose Keras Tuner project was started with the Bayesian oracle."""
    from automtl.config import load_experiment
    from automtl.rundir.folder import record_owner, write_snapshot

    run = w.path("kt_run")
    if not (run / "automtl-run.json").exists():
        exp = load_experiment(w.good, {"out": run, "backend": "keras-tuner", "algorithm": "bayesian"})
        (run / "keras_tuner" / "tiny").mkdir(parents=True, exist_ok=True)
        (run / "keras_tuner" / "tiny" / "automtl_backend.json").write_text('{"algorithm": "bayesian"}')
        record_owner(exp, run)
        write_snapshot(exp, w.space_path, run)
    return run


def _text_experiment(w: Workspace, name: str, params: dict[str, Any]) -> Path:
    space = w.path(f"space_{name}")
    space.write_text(yaml.safe_dump({**SPACE, "parameters": {**SPACE["parameters"], **params}}))
    return w.experiment(name, space=str(space), inputs=[
        {"name": "features", "type": "tabular", "numeric": ["x*"]}, {"name": "words", "type": "text", "column": "city"}])


def _numeric_kind_with_inf(t: Any) -> Any:
    t["kind"] = (t["x2"] > 0).astype(float)
    t.loc[3, "kind"] = float("inf")
    return t


def _broken_model(w: Workspace) -> Path:
    folder = w.folder("broken_model", {"automtl.json": "{not json", "saved_model/.keep": ""})
    return folder


def gpu_seen() -> bool:
    """Whether the cheap device query finds a GPU here (then the no-GPU cases do not apply)."""
    from automtl.devices import gpus_without_tensorflow

    return gpus_without_tensorflow()[0] != 0


def arguments(case: Case, workspace: Workspace) -> list[str]:
    return [str(a) for a in case.args(workspace)]
