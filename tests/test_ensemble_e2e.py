"""End to end: a search ends with baselines, delta-m and an ensemble that serves; distillation; bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from conftest import TINY_SPACE, default_ending, experiment_dict, make_table
from helpers import assert_user_error
from test_export import SERVE

#: every test here runs a search (or reads one that a module fixture ran): the e2e loop
pytestmark = pytest.mark.e2e


def _invoke(*args: str):
    from automtl.cli import cli as group

    return CliRunner().invoke(group, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, str]:
    """One tiny search: 4 trials, an ensemble of up to 3, auto baselines; 'kind' unlabelled on a third of the rows."""
    root = tmp_path_factory.mktemp("ens")
    frame = make_table(240)
    frame.loc[::3, "kind"] = None
    frame.to_csv(root / "data.csv", index=False)
    (root / "space.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    exp = default_ending(experiment_dict(root / "data.csv", root / "space.yaml", out=str(root / "run"), trials=4))
    exp["search"]["ensemble"] = 3
    (root / "experiment.yaml").write_text(yaml.safe_dump(exp))
    result = _invoke("search", "--config", root / "experiment.yaml", "--no-report")
    assert result.exit_code == 0, result.output
    return root / "run", result.output


def test_search_ends_with_the_ensemble_and_the_baselines(finished):
    run, output = finished
    assert "ensemble of" in output and "vs best single trial" in output
    assert "Single-task baselines" in output and "delta-m" in output
    for task in ("price", "kind"):
        assert f"{task}: " in output  # the per-task verdict in words
        assert (run / "baselines" / task / "trials").is_dir()
    doc = json.loads((run / "trials.json").read_text())
    baselines, ensemble = doc["baselines"], doc["ensemble"]
    assert baselines["mode"] == "auto" and baselines["trainings"] == 2
    assert {t["task"] for t in baselines["tasks"]} == {"price", "kind"}
    best = json.loads((run / "best" / "automtl.json").read_text())
    assert best["baselines"]["best_trial"] == best["trial"]["number"] == baselines["best_trial"]
    changes = [t["delta"] for t in baselines["tasks"]]
    assert baselines["delta_m"] == pytest.approx(sum(changes) / len(changes))
    for t in baselines["tasks"]:  # the baseline's metric is the one its own training recorded
        assert t["single"] == pytest.approx(t["metrics"][f"{t['task']}.{t['metric']}"], rel=1e-6)
        assert t["params"].get("loss_weight." + t["task"]) is None  # multi-task-only parameters left out
    assert ensemble["score"] >= ensemble["best_single"]["score"] - 1e-9
    assert sum(m["weight"] for m in ensemble["members"]) == pytest.approx(1.0)
    for r in doc["trials"]:  # every completed trial kept its validation predictions
        if r["state"] == "complete":
            assert (run / "trials" / f"{r['number']:05d}" / "valid_pred.npz").exists()
    listed = _invoke("trials", run)
    assert "ensemble" in listed.output and "delta-m" in listed.output


def test_ensemble_served_by_plain_tensorflow_is_the_weighted_average_of_its_members(finished, tmp_path):
    import keras

    import automtl.model.layers  # noqa: F401
    from automtl.export.predict import load_manifest, model_inputs

    run, _ = finished
    manifest = load_manifest(run / "ensemble")
    best_manifest = json.loads((run / "best" / "automtl.json").read_text())
    assert [t["outputs"] for t in manifest["tasks"]] == [t["outputs"] for t in best_manifest["tasks"]]
    members = manifest["ensemble"]["members"]
    per_task = manifest["ensemble"]["tasks"]
    frame = make_table(30, seed=5)
    x = model_inputs(manifest, {c: frame[c].to_numpy() for c in frame.columns}, "test")
    np.savez(tmp_path / "in.npz", **x)
    subprocess.run([sys.executable, "-c", SERVE, str(run / "ensemble"), str(tmp_path / "in.npz"),
                    str(tmp_path / "out.npz")], check=True, cwd=tmp_path)
    served = dict(np.load(tmp_path / "out.npz", allow_pickle=True))
    probs, value = 0.0, 0.0
    raws = {}
    for m in members:
        model = keras.saving.load_model(run / "ensemble" / m["model"])
        raws[m["trial"]] = model({k: (v.astype(str) if v.dtype == object else v) for k, v in x.items()})
    for m in per_task["kind"]:
        p1 = 1 / (1 + np.exp(-np.asarray(raws[m["trial"]]["kind"], np.float64)[:, 0]))
        probs = probs + m["weight"] * np.stack([1 - p1, p1], axis=1)
    for m in per_task["price"]:
        value = value + m["weight"] * np.asarray(raws[m["trial"]]["price"])[:, 0]
    price = next(t for t in manifest["tasks"] if t["name"] == "price")
    np.testing.assert_allclose(served["kind.probabilities"], probs, atol=1e-5)
    np.testing.assert_allclose(served["price.value"], value * price["std"][0] + price["mean"][0], rtol=1e-4, atol=1e-3)
    # `automtl predict` takes the ensemble folder like best/
    frame.to_csv(tmp_path / "rows.csv", index=False)
    result = _invoke("predict", run / "ensemble", "--data", tmp_path / "rows.csv", "--out", tmp_path / "pred.csv")
    assert result.exit_code == 0, result.output
    import pandas as pd

    written = pd.read_csv(tmp_path / "pred.csv")
    np.testing.assert_allclose(written["price.value"], served["price.value"], rtol=1e-4, atol=1e-3)


def test_export_a_baseline_like_best(finished, tmp_path):
    run, _ = finished
    result = _invoke("export", run, "--baseline", "price", "--out", tmp_path / "price")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "price" / "automtl.json").read_text())
    assert [t["name"] for t in manifest["tasks"]] == ["price"] and manifest["baseline"]["task"] == "price"
    assert (tmp_path / "price" / "saved_model").is_dir()
    assert_user_error(_invoke("export", run, "--baseline", "nosuch", "--out", tmp_path / "x"),
                      "no baseline for task 'nosuch'", "price")


def test_search_summary_lists_every_file_it_exported(finished):
    run, output = finished
    best = next(line for line in output.splitlines() if line.startswith("best trial #"))
    ensemble = next(line for line in output.splitlines() if line.startswith("ensemble of"))
    for name in ("saved_model/", "model.keras", "preprocessing.json", "preprocess.py", "automtl.json"):
        assert name in best, best
    for name in ("saved_model/", "members/", "preprocessing.json", "automtl.json"):
        assert name in ensemble, ensemble


def test_export_run_exports_best_as_it_serves_and_the_ensemble_in_every_format(finished, tmp_path):
    import pandas as pd

    pytest.importorskip("tf2onnx")
    run, _ = finished
    rows = make_table(12, seed=9)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    for flag, served in (((), "best"), (("--ensemble",), "ensemble")):
        out = tmp_path / f"export-{served}"
        result = _invoke("export", run, *flag, "--out", out, "--format", "onnx,tflite")
        assert result.exit_code == 0, result.output
        for name in ("saved_model/", "model.onnx", "model.tflite", "automtl.json"):
            assert name in result.output.splitlines()[0], result.output  # the summary lists every file
        manifest = json.loads((out / "automtl.json").read_text())
        assert manifest["exported_from"] == str((run / served).resolve())
        for fmt in ("onnx", "tflite"):  # the same parity checks as a trial's export
            assert manifest["formats"][fmt]["parity"]["rows"] > 0
        # what the export serves is what RUN/<served> serves, to the last digit
        for folder, name in ((run / served, "served"), (out, "exported")):
            done = _invoke("predict", folder, "--data", tmp_path / "rows.csv", "--out", tmp_path / f"{name}.csv")
            assert done.exit_code == 0, done.output
        a, b = pd.read_csv(tmp_path / "served.csv"), pd.read_csv(tmp_path / "exported.csv")
        assert list(a.columns) == list(b.columns)
        np.testing.assert_allclose(a["price.value"], b["price.value"], rtol=1e-6)
        assert (a["kind.label"] == b["kind.label"]).all()
    best = json.loads((run / "best" / "automtl.json").read_text())
    exported = json.loads((tmp_path / "export-best" / "automtl.json").read_text())
    assert exported["trial"]["number"] == best["trial"]["number"] and exported.get("refit") == best.get("refit")
    assert_user_error(_invoke("export", run, "--ensemble", "--trial", "0", "--out", tmp_path / "x"),
                      "at most one of --ensemble, --trial N or --baseline TASK")


RERUN = """
import sys
from automtl.cli import cli
try:
    cli(sys.argv[1:], standalone_mode=False)
finally:
    print("tensorflow imported:", "tensorflow" in sys.modules)
"""


def test_a_rerun_with_nothing_left_prints_the_summary_without_tensorflow(finished, tmp_path):
    from automtl.config import load_experiment
    from automtl.rundir.resume import finished_run

    run, output = finished
    config = run.parent / "experiment.yaml"
    proc = subprocess.run([sys.executable, "-c", RERUN, "search", "--config", str(config), "--no-report"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing left to do" in proc.stdout and "tensorflow imported: False" in proc.stdout, proc.stdout
    assert "loading TensorFlow" not in proc.stdout
    assert output.splitlines()[0].endswith("checking the data, then loading TensorFlow ...")  # the first line
    best = next(line for line in output.splitlines() if line.startswith("best trial #"))
    assert best.split(" exported")[0] in proc.stdout  # the same summary, read from the run folder
    assert "ensemble of" in proc.stdout and "delta-m" in proc.stdout
    # anything left (more trials, a report not yet written, another experiment) runs the search as usual
    assert finished_run(load_experiment(config, {"trials": 6}), report=False) is None
    assert finished_run(load_experiment(config, {}), report=True) is None
    assert finished_run(load_experiment(config, {"epochs": 2}), report=False) is not None
    assert finished_run(load_experiment(config, {"timeout": 60}), report=False) is None
    assert finished_run(load_experiment(config, {"ensemble": 7}), report=False) is None  # select again
    assert finished_run(load_experiment(config, {"baselines": "search"}), report=False) is None  # their studies


def test_report_plots_each_task_on_the_validation_rows_for_the_best_trial_and_the_ensemble(finished, tmp_path):
    from automtl.rundir.report import write_report

    run, _ = finished
    doc = json.loads((run / "diagnostics.json").read_text())
    best = json.loads((run / "best" / "automtl.json").read_text())["trial"]["number"]
    assert [m["name"] for m in doc["models"]] == [f"best trial #{best}", "ensemble"]
    split = json.loads((run / "split.json").read_text())
    for model in doc["models"]:
        kind, price = model["tasks"]["kind"], model["tasks"]["price"]
        matrix = np.array(kind["confusion"])
        assert kind["classes"] == ["basic", "premium"] and matrix.shape == (2, 2)
        assert 0 < matrix.sum() < doc["rows"]  # only the labelled validation rows ('kind' lacks a third)
        for k in range(2):  # precision and recall are the matrix's, per class
            assert kind["precision"][k] == pytest.approx(matrix[k, k] / matrix[:, k].sum())
            assert kind["recall"][k] == pytest.approx(matrix[k, k] / matrix[k, :].sum())
        actual, predicted = np.array(price["actual"][0]), np.array(price["predicted"][0])
        assert len(actual) == len(predicted) == doc["rows"]
        assert 30 < actual.mean() < 70  # the user's units (prices around 50), not standardised values
    # the best trial's figures agree with its recorded metrics on the same rows
    record = next(r for r in json.loads((run / "trials.json").read_text())["trials"] if r["number"] == best)
    first = doc["models"][0]["tasks"]
    rmse = float(np.sqrt(np.mean((np.array(first["price"]["actual"][0]) - np.array(first["price"]["predicted"][0])) ** 2)))
    assert rmse == pytest.approx(record["metrics"]["price.rmse"], rel=1e-4)
    matrix = np.array(first["kind"]["confusion"])
    assert np.trace(matrix) / matrix.sum() == pytest.approx(record["metrics"]["kind.accuracy"], rel=1e-6)
    assert split  # the validation rows are the run's recorded split
    page = write_report(run, tmp_path / "report.html").read_text()
    for title in ("Confusion matrix of &#x27;kind&#x27;", "Precision and recall per class of &#x27;kind&#x27;",
                  "Predicted vs actual, and residuals, of &#x27;price&#x27;", "ensemble"):
        assert title in page, title


def test_distill_fills_missing_labels_with_the_teacher_and_serves(finished, tmp_path):
    run, _ = finished
    result = _invoke("distill", run, "--out", tmp_path / "student", "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert "teacher (ensemble)" in result.output and "latency batch 256" in result.output
    assert "parameters" in result.output
    manifest = json.loads((tmp_path / "student" / "automtl.json").read_text())
    assert manifest["teacher"]["kind"] == "ensemble"
    ensemble_members = json.loads((run / "ensemble" / "automtl.json").read_text())["ensemble"]["members"]
    assert [(m["trial"], pytest.approx(m["weight"])) for m in manifest["teacher"]["members"]] == [
        (m["trial"], m["weight"]) for m in ensemble_members]
    filled = manifest["distillation"]["filled_rows"]
    assert filled["kind"] > 0 and filled["price"] == 0  # 'kind' unlabelled on a third of the rows
    assert f"task 'kind': the teacher filled in {filled['kind']}" in result.output
    assert manifest["distillation"]["mixup_rows"] > 0  # the default transfer set adds MixUp rows
    from automtl.export.predict import predict

    frame = make_table(20, seed=9)
    frame.to_csv(tmp_path / "new.csv", index=False)
    summary = predict(tmp_path / "student", tmp_path / "new.csv", tmp_path / "pred.csv")
    assert summary.rows == 20 and "kind.label" in summary.outputs


def test_bad_inputs_exit_2_with_a_clear_message(finished, write_experiment, tmp_path):
    run, _ = finished
    assert_user_error(_invoke("search", "--config", write_experiment(), "--ensemble", "-1"), "--ensemble")
    bad = write_experiment("bad.yaml", search={"ensemble": -1})
    assert_user_error(_invoke("search", "--config", bad), "search.ensemble", "greater than or equal to 0")
    assert_user_error(_invoke("distill", run, "--out", tmp_path / "s", "--teacher", "nobody"), "--teacher", "ensemble, best")
    assert_user_error(_invoke("distill", run, "--out", tmp_path / "s", "--student", "missing.yaml"), "--student")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "trials.json").write_text(json.dumps({"format": "automtl-trials/1", "tasks": [], "trials": [
        {"number": 0, "state": "fail", "score": None, "params": {}, "metrics": {}, "duration_s": 1.0,
         "reason": "boom"}]}))
    assert_user_error(_invoke("distill", empty, "--out", tmp_path / "s"), "no completed trial")
    assert_user_error(_invoke("export", run, "--trial", "0", "--baseline", "price", "--out", tmp_path / "s"),
                      "at most one of --ensemble, --trial N or --baseline TASK")


def test_baselines_search_runs_a_resumable_single_task_study_per_task(write_experiment, cli, tmp_path):
    run = tmp_path / "run"
    exp = write_experiment(search={"trials": 2, "epochs": 2, "seed": 0, "trials_per_process": 0, "out": str(run),
                                   "baselines": "search", "baseline_trials": 1, "ensemble": 0})
    result = cli("search", "--config", exp, "--no-report")
    assert result.exit_code == 0, result.output
    import optuna

    storage = f"sqlite:///{run / 'study.db'}"
    names = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    assert names == {"tiny": 2, "tiny/single/price": 1, "tiny/single/kind": 1}
    params = optuna.load_study(study_name="tiny/single/kind", storage=storage).trials[0].params
    assert not any(k.startswith(("loss_weight", "task_prob", "weighting")) for k in params)
    assert "head.price.units" not in params
    doc = json.loads((run / "baselines.json").read_text())
    assert doc["mode"] == "search" and doc["trainings"] == 2
    again = cli("search", "--config", exp, "--no-report", "--baseline-trials", "2")  # resumes every study
    assert again.exit_code == 0, again.output
    names = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    assert names == {"tiny": 2, "tiny/single/price": 2, "tiny/single/kind": 2}
    assert json.loads((run / "baselines.json").read_text())["trainings"] == 2  # one new trial per task


def test_baselines_search_in_trial_processes_on_a_cross_validated_run(write_experiment, cli, tmp_path):
    """The default trial processes train the single-task searches too (their study names hold '/'), and a
    cross-validated run's single-task searches cross-validate on its folds, compared out of fold."""
    run = tmp_path / "run"
    exp = write_experiment(data={"train": str(tmp_path / "data.csv"), "folds": 3},
                           search={"trials": 2, "epochs": 2, "seed": 0, "out": str(run), "baselines": "search",
                                   "baseline_trials": 1, "ensemble": 0})
    result = cli("search", "--config", exp, "--no-report")
    assert result.exit_code == 0, result.output
    assert "could not train" not in result.output
    doc = json.loads((run / "baselines.json").read_text())
    assert doc["mode"] == "search" and {t["task"] for t in doc["tasks"]} == {"price", "kind"}
    assert all(t["interval"] is not None for t in doc["tasks"])  # out-of-fold rows lined up
    for t in doc["tasks"]:
        with np.load(run / t["folder"] / "trials" / f"{t['trial']:05d}" / "valid_pred.npz") as pred:
            assert len(pred[t["task"]]) == 300  # every training row, out of fold


def test_baselines_search_with_space_auto_under_keras_tuner(write_experiment, cli, tmp_path):
    """The single-task searches use the auto space the main search chose, each without the parameters only
    the other task's plugin declares, in a Keras Tuner project named for the task inside its own folder."""
    run = tmp_path / "run"
    exp = write_experiment(space="auto", search={"trials": 1, "epochs": 1, "seed": 0, "trials_per_process": 0,
                                                 "out": str(run), "backend": "keras-tuner", "algorithm": "random",
                                                 "baselines": "search", "baseline_trials": 1, "ensemble": 0})
    result = cli("search", "--config", exp, "--no-report")
    assert result.exit_code == 0, result.output
    assert "could not train" not in result.output
    doc = json.loads((run / "baselines.json").read_text())
    params = {t["task"]: t["params"] for t in doc["tasks"]}
    assert set(params) == {"price", "kind"}
    assert "label_smoothing" in params["kind"] and "label_smoothing" not in params["price"]
    assert (run / "baselines" / "price" / "keras_tuner" / "tiny-single-price").is_dir()
