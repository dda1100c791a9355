"""Sharing schemes: each builds, trains, exports and serves on vector, image and text inputs; what each
shares is what it says (checked on the variables); bad schemes and parameters are refused before any
trial; a third-party scheme plugs in through an entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from automtl.data.table import Table
from automtl_classification import ClassificationTask
from automtl_image import ImageInput
from automtl_regression import RegressionTask
from automtl_tabular import TabularInput
from automtl_text import TextInput, TextTask
from conftest import LEAN_ENDING, LEAN_FLAGS, REPO, make_table
from helpers import assert_user_error, prepared, split, train_once

SCHEMES = ["none", "hard", "branch", "soft", "cross_stitch", "mmoe", "ple"]
TINY = {"trunk.depth": 1, "trunk.units": 8, "image.stages": 2, "image.filters": 4, "batch_size": 16,
        "head.units": 8, "experts": 2, "ple.levels": 2, "branch.at": 2, "soft.strength": 0.1}


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def mixed_table(n: int = 48, seed: int = 0) -> Table:
    """Numbers, an 8x8 image and a tagged text per row; a class, a value and tags to predict."""
    rng = np.random.default_rng(seed)
    cities = ["boston", "paris", "oslo", "tokyo"]
    label = rng.integers(0, 2, n)
    pixels = rng.random((n, 8, 8)).astype(np.float32) + label[:, None, None] * np.eye(8, dtype=np.float32)
    x = rng.normal(size=(n, 3))
    tokens = [["fly", "to", cities[i % 4]] if label[i] else ["weather", "in", cities[i % 4]] for i in range(n)]
    return Table("mixed.npz", {
        "x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "pixels": pixels,
        "tokens": _objects(tokens), "tags": _objects([["O", "O", "B-city"]] * n),
        "intent": _objects(["flight" if v else "weather" for v in label]),
        "price": (3 * x[:, 0] + label).astype(np.float64),
    })


def mixed_plugins(text: bool = True):
    encs = [TabularInput("features", {"numeric": ["x*"]}), ImageInput("image", {"array": "pixels"})]
    tasks = [ClassificationTask("intent", {"target": "intent"}), RegressionTask("price", {"target": "price"})]
    if text:
        encs.append(TextInput("text", {"column": "tokens", "embedding": 8}))
        tasks.append(TextTask("slots", {}))
    for enc in encs:
        enc.tasks = tuple(tasks)
    return encs, tasks


def build(params: dict, text: bool = False):
    import keras

    from automtl.core.trial_params import TrialParams
    from automtl.model.assemble import build_model

    encs, tasks = mixed_plugins(text)
    table = mixed_table()
    prepared(encs, tasks, table.take(np.arange(36)), table.take(np.arange(36, 48)))
    keras.backend.clear_session()
    return build_model(encs, tasks, TrialParams({**TINY, **params})), tasks


def test_schemes_are_registered_with_their_declared_parameters():
    from automtl.core import registry

    assert set(SCHEMES) <= set(registry.names("sharing"))
    specs = registry.parameter_specs()
    assert specs["sharing"].choices is not None and set(SCHEMES) <= set(specs["sharing"].choices)
    for name in ("branch.at", "soft.strength", "cross_stitch.self", "experts", "ple.levels", "ple.shared_experts"):
        assert name in specs, name


@pytest.mark.e2e
@pytest.mark.parametrize("sharing", SCHEMES)
def test_each_scheme_trains_exports_and_serves_on_vector_image_and_text_inputs(sharing, tmp_path):
    import tensorflow as tf

    from automtl.core.trial import TrialRecord
    from automtl.export.savedmodel import export_trial

    encs, tasks = mixed_plugins()
    table = mixed_table()
    train, valid = prepared(encs, tasks, table.take(np.arange(36)), table.take(np.arange(36, 48)))
    params = {**TINY, "sharing": sharing, "weighting": "gradnorm"}
    assembled, trainer, fit = train_once(encs, tasks, train, valid, params, epochs=2)
    assert set(fit.metrics) == {"intent", "price", "slots"} and np.isfinite(fit.objective)
    assembled.model.save(tmp_path / "m.keras")
    out = export_trial(tmp_path / "m.keras", encs, tasks, TrialRecord(0, "complete", fit.objective, params, {}, 1.0),
                       tmp_path / "best")
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    served = serve(features=tf.constant(valid.x["features"]), image=tf.constant(valid.x["image"]),
                   text=tf.constant(valid.x["text"].astype(str)))
    raw = trainer.predict(trainer._valid_x, len(valid))
    price = tasks[1]
    np.testing.assert_allclose(served["price.value"].numpy(), raw["price"][:, 0] * price.std[0] + price.mean[0],
                               rtol=1e-4, atol=1e-4)
    assert served["slots.tags"].shape[0] == len(valid)


def test_none_has_no_shared_trainable_weight():
    assembled, tasks = build({"sharing": "none", "trunk.depth": 2})
    assert assembled.shared_variables() == []
    owners = {}
    for t in tasks:
        for v in assembled.task_variables(t.name):
            owners.setdefault(id(v), []).append(t.name)
    assert owners and all(len(o) == 1 for o in owners.values())
    assert len(owners) == len(assembled.model.trainable_variables)  # every variable is some task's alone


@pytest.mark.parametrize("at", [0, 1, 2, 3, 4, 9])
def test_branch_shares_exactly_the_first_levels(at):
    # two conv stages then two dense layers: four levels
    assembled, tasks = build({"sharing": "branch", "branch.at": at, "trunk.depth": 2})
    levels = ["image_stage0", "image_stage1", "trunk_dense0", "trunk_dense1"]
    names = {layer.name for layer in assembled.model.layers}
    for i, level in enumerate(levels):
        shared = i < at
        assert (level in names) == shared, (level, at)
        assert all((f"{level}-{t.name}" in names) != shared for t in tasks), (level, at)
    shared_ids = {id(v) for v in assembled.shared_variables()}
    expected = [v for level in levels[:at] for v in assembled.model.get_layer(level).trainable_weights]
    assert shared_ids == {id(v) for v in expected}


def test_hard_shares_every_level():
    assembled, tasks = build({"sharing": "hard", "trunk.depth": 2})
    head_ids = {id(v) for h in assembled.heads.values() for v in h.trainable_variables}
    assert {id(v) for v in assembled.shared_variables()} == {
        id(v) for v in assembled.model.trainable_variables if id(v) not in head_ids}


def _copies_apart(assembled, level: str, tasks) -> float:
    a, b = (assembled.model.get_layer(f"{level}-{t.name}").kernel.numpy() for t in tasks[:2])
    return float(np.sum((a - b) ** 2))


@pytest.mark.parametrize("strategy", ["joint", "alternating"])
def test_soft_penalty_keeps_corresponding_weights_closer(strategy):
    encs = [TabularInput("features", {"numeric": ["x*"], "categorical": ["city"]})]
    tasks = [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]
    train, valid = prepared(encs, tasks, *split(make_table(200)))
    apart = {}
    for strength in (0.0, 1.0):
        params = {"sharing": "soft", "soft.strength": strength, "strategy": strategy, "trunk.depth": 1,
                  "trunk.units": 16, "dropout": 0.0, "learning_rate": 0.01}
        assembled, _, _ = train_once(encs, tasks, train, valid, params, epochs=4)
        apart[strength] = _copies_apart(assembled, "trunk_dense0", tasks)
    assert apart[1.0] < 0.5 * apart[0.0], apart


def test_alternating_step_moves_only_the_trained_tasks_copies():
    import tensorflow as tf

    from automtl.core.trial_params import TrialParams
    from automtl.model.assemble import build_model
    from automtl.training.strategies.alternating import AlternatingTraining
    from automtl.training.trainer import to_tensors

    encs = [TabularInput("features", {"numeric": ["x*"]})]
    tasks = [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]
    train, _ = prepared(encs, tasks, *split(make_table(100)))
    params = TrialParams({"sharing": "soft", "soft.strength": 1.0, "strategy": "alternating", "trunk.depth": 1})
    assembled = build_model(encs, tasks, params)
    kind_copy = assembled.model.get_layer("trunk_dense0-kind").kernel
    price_copy = assembled.model.get_layer("trunk_dense0-price").kernel
    before_kind, before_price = kind_copy.numpy().copy(), price_copy.numpy().copy()
    step = AlternatingTraining(assembled, tasks, params, train, tf.random.Generator.from_seed(0),
                               np.random.default_rng(0), lambda x, y, m: (x, y, m))
    step.branch(0, to_tensors(train.x), to_tensors(train.y), to_tensors(train.mask))  # the "price" task
    np.testing.assert_array_equal(kind_copy.numpy(), before_kind)
    assert not np.array_equal(price_copy.numpy(), before_price)


def test_cross_stitch_units_start_near_identity_and_are_trained():
    built, _ = build({"sharing": "cross_stitch"})
    np.testing.assert_allclose(built.model.get_layer("cross_stitch0_image").alpha.numpy(), [[0.9, 0.1], [0.1, 0.9]])
    encs = [TabularInput("features", {"numeric": ["x*"], "categorical": ["city"]})]
    tasks = [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]
    train, valid = prepared(encs, tasks, *split(make_table(200)))
    params = {"sharing": "cross_stitch", "trunk.depth": 2, "trunk.units": 16, "learning_rate": 0.01}
    assembled, _, _ = train_once(encs, tasks, train, valid, params, epochs=3)
    assert any(v is assembled.model.get_layer("cross_stitch1_vector").alpha for v in assembled.shared_variables())
    for k in (0, 1):
        alpha = assembled.model.get_layer(f"cross_stitch{k}_vector").alpha.numpy()
        assert not np.allclose(alpha, [[0.9, 0.1], [0.1, 0.9]]), alpha


def test_mixtures_mix_maps_and_sequences_per_task():
    assembled, tasks = build({"sharing": "mmoe", "experts": 2}, text=True)
    names = {layer.name for layer in assembled.model.layers}
    assert {"image_stage0-expert0", "image_stage0-expert1", "text_conv_conv0-expert1", "gate_slots"} <= names
    assert {"mixture_slots_sequence", "mixture_slots_vector"} & names
    assembled, tasks = build({"sharing": "ple", "ple.levels": 2, "trunk.depth": 1})
    names = {layer.name for layer in assembled.model.layers}
    assert {"image_stage0-ple0-shared0", "image_stage0-ple0-intent-0", "gate_ple0_shared",
            "trunk_dense0-ple1-shared0", "gate_ple1_task_price"} <= names
    assert "gate_ple1_shared" not in names  # no shared gate at the top level


@pytest.mark.parametrize("sharing, fragment", [("none", "own copy of the last level"),
                                               ("hard", "last shared level: trunk_dense0"),
                                               ("mmoe", "the experts' last level")])
def test_gradnorm_says_in_the_history_which_layers_it_measures(sharing, fragment):
    encs = [TabularInput("features", {"numeric": ["x*"]})]
    tasks = [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]
    train, valid = prepared(encs, tasks, *split(make_table(100)))
    assembled, _, fit = train_once(encs, tasks, train, valid, {"sharing": sharing, "weighting": "gradnorm",
                                                               "trunk.depth": 1}, epochs=2)
    assert fragment in fit.history[0]["gradient_norms_on"]
    assert assembled.last_shared_variables()
    assert all(np.isfinite(row["weight.price"]) for row in fit.history)


# -- spaces and bad input ----------------------------------------------------------------------
@pytest.mark.parametrize("parameters, fragments", [
    ({"sharing": {"choice": ["hard", "tower"]}}, ["sharing: unknown value 'tower'", "cross_stitch"]),
    ({"sharing": "branch", "branch.at": {"int": [-1, 2]}}, ["branch.at", "out of range", ">= 0"]),
    ({"sharing": "soft", "soft.strength": -0.5}, ["soft.strength", "out of range"]),
    ({"sharing": "cross_stitch", "cross_stitch.self": 1.5}, ["cross_stitch.self", "out of range"]),
    ({"sharing": "ple", "ple.levels": {"int": [0, 2]}}, ["ple.levels", "out of range"]),
    ({"sharing": "branch", "branch.at": {"float": [0.5, 2.0]}}, ["branch.at", "whole numbers"]),
])
def test_bad_scheme_names_and_parameters_are_refused_before_any_trial(cli, write_experiment, tmp_path, parameters,
                                                                        fragments):
    space = tmp_path / "bad_space.yaml"
    space.write_text(yaml.safe_dump({"parameters": parameters}))
    path = write_experiment(space=str(space))
    assert_user_error(cli("search", "--config", path), "bad_space.yaml", *fragments)
    assert not (tmp_path / "run" / "trials").exists()


def test_sharing_space_translates_for_keras_tuner():
    pytest.importorskip("keras_tuner")
    from automtl.backends.keras_tuner.space import params_of, to_hyperparameters
    from automtl.space import load_space

    space = load_space(REPO / "search_spaces" / "sharing.yaml", ["a", "b"])
    hp = to_hyperparameters(space)
    hp.values.update({"sharing": "branch", "strategy": "joint"})
    hp.ensure_active_values()
    params = params_of(space, hp.values)
    assert "branch.at" in params and "soft.strength" not in params and "experts" not in params


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["optuna", "keras-tuner"])
def test_digits_demo_searches_the_sharing_space_and_resumes(cli, tmp_path, backend):
    if backend == "keras-tuner":
        pytest.importorskip("keras_tuner")
    out = tmp_path / "run"
    args = ("search", "--demo", "digits", "--space", "sharing", "--backend", backend, "--epochs", "1",
            "--out", out, "--quiet", "--no-report", *LEAN_FLAGS)
    result = cli(*args, "--trials", "3")
    assert result.exit_code == 0, result.output
    trials = json.loads((out / "trials.json").read_text())["trials"]
    assert len(trials) == 3 and all(t["state"] == "complete" for t in trials)
    assert all(t["params"]["sharing"] in SCHEMES for t in trials)
    first = [t["params"] for t in trials]
    result = cli(*args, "--trials", "4")  # the same command with a larger budget resumes the study
    assert result.exit_code == 0, result.output
    trials = json.loads((out / "trials.json").read_text())["trials"]
    assert len(trials) == 4 and [t["params"] for t in trials[:3]] == first
    assert (out / "best" / "model.keras").exists()


# -- a third-party scheme --------------------------------------------------------------------
LATE_BRANCH = '''
"""A third-party sharing scheme: every level shared but the top ``late.copies``, copied per task."""
from automtl.core.params import ParamSpec
from automtl.model.sharing import Shared, SharingScheme, shared_last


class LateBranch(SharingScheme):
    parameters = (ParamSpec("late.copies", 1, low=1, integer=True, doc="top levels copied per task"),)

    def build(self, trunk, tasks, params):
        at = max(0, trunk.depth - int(self.value(params, "late.copies")))
        common = trunk.run(trunk.begin(), 0, at)
        per_task = {t: trunk.run(common, at, trunk.depth, tag=t).tensors for t in tasks}
        last, said = shared_last(trunk, at)
        return Shared(per_task, last, said)
'''


@pytest.mark.e2e
def test_third_party_scheme_through_an_entry_point(tmp_path, table_csv):
    from helpers import fake_distribution

    site = fake_distribution(tmp_path, "automtl_late", LATE_BRANCH, "0.1", "automtl.sharing",
                             "late_branch = automtl_late:LateBranch")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}

    def search(copies) -> subprocess.CompletedProcess:
        space = tmp_path / "space.yaml"
        space.write_text(yaml.safe_dump({"parameters": {"sharing": "late_branch", "late.copies": copies, "trunk.depth": 2,
                                                        "trunk.units": 16, "batch_size": 32}}))
        exp = {"name": "late", "data": {"train": str(table_csv), "valid_fraction": 0.25},
               "inputs": [{"name": "features", "type": "tabular", "numeric": ["x*"]}],
               "tasks": [{"name": "price", "type": "regression", "target": "price"},
                         {"name": "kind", "type": "classification", "target": "kind"}],
               "space": str(space), "search": {**LEAN_ENDING, "trials": 3, "epochs": 2, "out": str(tmp_path / "run"),
                                               "trials_per_process": 0}}
        path = tmp_path / "exp.yaml"
        path.write_text(yaml.safe_dump(exp))
        return subprocess.run([sys.executable, "-m", "automtl.cli", "search", "--config", str(path), "--quiet"],
                              env=env, capture_output=True, text=True, cwd=tmp_path)

    bad = search({"int": [0, 1]})  # its own declaration refuses 0
    assert bad.returncode == 2 and "late.copies" in bad.stderr + bad.stdout and "Traceback" not in bad.stderr
    proc = search(1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trials = json.loads((tmp_path / "run" / "trials.json").read_text())["trials"]
    assert all(t["state"] == "complete" and t["params"]["sharing"] == "late_branch" for t in trials)

    import keras

    from automtl.model import layers  # noqa: F401  (registers DenseLevel)

    names = {layer.name for layer in keras.saving.load_model(tmp_path / "run" / "best" / "model.keras").layers}
    assert {"trunk_dense0", "trunk_dense1-price", "trunk_dense1-kind"} <= names and "trunk_dense1" not in names


def test_trial_summaries_name_the_scheme_and_its_main_parameter():
    from automtl.rundir.choices import short_params

    assert short_params({"sharing": "branch", "branch.at": 2, "strategy": "joint"}).startswith("branch(at=2), joint")
    assert short_params({"sharing": "soft", "soft.strength": 0.0123}).startswith("soft(strength=0.012)")
    assert short_params({"sharing": "none", "learning_rate": 0.001}) == "none, lr 0.001"


@pytest.mark.e2e
@pytest.mark.parametrize("sharing", ["none", "soft", "branch"])
def test_gradient_manipulations_train_under_schemes_with_few_shared_variables(sharing):
    """PCGrad / CAGrad act on the shared variables; with ``none`` there are none, and training still runs."""
    encs, tasks = mixed_plugins(text=False)
    table = mixed_table()
    train, valid = prepared(encs, tasks, table.take(np.arange(36)), table.take(np.arange(36, 48)))
    for weighting in ("pcgrad", "cagrad"):
        params = {**TINY, "sharing": sharing, "weighting": weighting, "branch.at": 1}
        assembled, trainer, fit = train_once(encs, tasks, train, valid, params, epochs=2)
        assert np.isfinite(fit.objective), (sharing, weighting)
        nothing_shared = not assembled.shared_variables()  # none, and soft here (no trainable input layer)
        assert nothing_shared == (sharing != "branch")
        assert ("gradient_manipulation" in trainer.strategy.notes) == nothing_shared  # said in the history
