"""The new weighting methods in real searches: both backends, history, export, resume, report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

#: every test here runs a search (or reads one that a module fixture ran): the e2e loop
pytestmark = pytest.mark.e2e

NEW = ["si", "famo", "dbmtl", "pcgrad", "cagrad"]
GRADIENT_METHODS = {"dbmtl", "pcgrad", "cagrad"}

SPACE = {
    "parameters": {"trunk.depth": 1, "trunk.units": 16, "strategy": "joint", "weighting": {"choice": NEW},
                   "cagrad_c": {"float": [0.2, 0.8], "when": {"weighting": "cagrad"}},
                   "famo_lr": {"float": [0.01, 0.05], "log": True, "when": {"weighting": "famo"}},
                   "learning_rate": 0.01, "batch_size": 32},
    "per_task": {"head.units": 8, "head.depth": 1},
}


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("backend, algorithm", [("optuna", "random"), ("keras-tuner", "random")])
def test_new_methods_search_export_and_resume(cli, write_experiment, tmp_path, backend, algorithm):
    # Optuna runs the start points first: every new method trains in this search (Keras Tuner ignores them
    # and draws three at random)
    n = len(NEW) if backend == "optuna" else 3
    space = {**SPACE, "start": [{"weighting": m} for m in NEW]} if backend == "optuna" else SPACE
    (tmp_path / "weights.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    exp = write_experiment(space=str(tmp_path / "weights.yaml"))
    args = ("search", "--config", exp, "--backend", backend, "--algorithm", algorithm, "--epochs", "2", "--no-report",
            "--pruner", "none")  # the resumed trial runs to the end (a sixth trial may be pruned otherwise)
    result = cli(*args, "--trials", str(n))
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    first = rows(run / "trials.csv")
    assert [r["state"] for r in first] == ["complete"] * n
    if backend == "optuna":
        assert sorted(r["param.weighting"] for r in first) == sorted(NEW)
    for r in first:
        method = r["param.weighting"]
        assert method in NEW
        history = json.loads((run / "trials" / f"{int(r['number']):05d}" / "history.json").read_text())
        assert all("weight.price" in h and "weight.kind" in h for h in history)
        assert all(("grad_cosine" in h and "conflict_share" in h) == (method in GRADIENT_METHODS) for h in history)
    manifest = json.loads((run / "best" / "automtl.json").read_text())
    assert manifest["trial"]["params"]["weighting"] in NEW
    assert (run / "best" / "saved_model" / "saved_model.pb").exists()
    resumed = cli(*args, "--trials", str(n + 1))
    assert resumed.exit_code == 0, resumed.output
    assert "resuming" in resumed.output
    after = rows(run / "trials.csv")
    # the finished trials are kept as they were (a column a later trial added is empty for them)
    assert [{k: r[k] for k in first[0]} for r in after[:n]] == first and after[n]["state"] == "complete"
    assert all(v == "" for r in after[:n] for k, v in r.items() if k not in first[0])


def test_report_plots_task_gradient_cosine_of_the_best_trial(cli, write_experiment, tmp_path):
    space = {**SPACE, "parameters": {**SPACE["parameters"], "weighting": "pcgrad"}}
    del space["parameters"]["cagrad_c"], space["parameters"]["famo_lr"]
    (tmp_path / "pcgrad.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    result = cli("search", "--config", write_experiment(space=str(tmp_path / "pcgrad.yaml")), "--trials", "1",
                 "--epochs", "3")
    assert result.exit_code == 0, result.output
    html = (tmp_path / "run" / "report.html").read_text()
    assert ">Task-gradient cosine per epoch<" in html
    assert "price vs kind" in html and "share of steps with a conflict" in html


def test_cosine_plot_falls_back_to_the_best_trial_that_has_gradients(tmp_path):
    from automtl.core.trial import TrialRecord, trial_dir
    from automtl.rundir.report import gradient_cosines
    from automtl.rundir.results import RunTrials

    def trial(number, score, weighting, history):
        trial_dir(tmp_path, number).mkdir(parents=True)
        (trial_dir(tmp_path, number) / "history.json").write_text(json.dumps(history))
        return TrialRecord(number, "complete", score, {"weighting": weighting}, {}, 1.0)

    plain = [{"epoch": 1, "weight.a.b": 1.0}]
    cosines = [{"epoch": e, "grad_cosine": c, "grad_cosine.a.b.c": c, "conflict_share": 0.5}
               for e, c in [(1, -0.2), (2, 0.1)]]
    run = RunTrials([trial(0, 0.9, "static", plain), trial(1, 0.8, "cagrad", cosines)],
                    tasks=[{"name": "a.b", "primary_metric": "m"}, {"name": "c", "primary_metric": "m"}])
    section = gradient_cosines(tmp_path, run)
    assert "trial 1 (the best trial, 0, used weighting 'static'" in section.figure.layout.title.text
    pair = section.figure.data[0]
    assert pair.name == "a.b vs c" and list(pair.y) == [-0.2, 0.1]  # task names may hold dots
    assert gradient_cosines(tmp_path, RunTrials(run.records[:1], tasks=run.tasks)) is None  # no section


@pytest.mark.parametrize("stem", ["weighting", "full"])
def test_ready_made_spaces_offer_every_method_with_its_own_parameters_under_both_backends(stem):
    """Each weighting's parameters are active exactly when it is chosen, as Optuna walks the space and as
    Keras Tuner's conditional scopes declare it."""
    pytest.importorskip("keras_tuner")
    from automtl.backends.keras_tuner.space import params_of, to_hyperparameters
    from automtl.core import registry
    from automtl.space import builtin_spaces, load_space

    space = load_space(next(p for p in builtin_spaces() if p.stem == stem), ["a", "b"])
    hp = to_hyperparameters(space)
    methods = registry.names("weighting")
    assert sorted(next(p for p in hp.space if p.name == "weighting").values) == sorted(methods)

    def base(names) -> set[str]:  # per-task names (loss_logit.a) by their declared name
        return {n.rsplit(".", 1)[0] if n.startswith("loss_") else n for n in names}

    def declared(method: str) -> set[str]:
        return {s.name for s in registry.member("weighting", method).parameters}

    in_space = base(p.name for p in space.params)
    for method in methods:
        values = {p.name: p.default for p in hp.space} | {"weighting": method, "strategy": "joint"}
        chosen = base(params_of(space, values))
        assert chosen == base(space.sample_with(lambda p: values[p.name]))  # Optuna walks the same way
        assert declared(method) & in_space <= chosen, method
        for other in methods:
            if other != method:
                assert not (declared(other) - declared(method)) & chosen, (method, other)
