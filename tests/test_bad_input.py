"""Bad input: exit code 2, a message naming the file/key/column, no traceback, and refused before TensorFlow.

The cases are a table (``tests/bad_input_cases.py``), shared with
``bench/bad_input_speed.py``, which times each as a fresh process.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from bad_input_cases import CASES, Workspace, arguments, gpu_seen
from helpers import assert_user_error


class TensorFlowWouldLoad(BaseException):
    """Raised where TensorFlow would start: a bad input must be refused before (a BaseException, so no
    error handler of the CLI can turn it into an exit code)."""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return Workspace(tmp_path_factory.mktemp("bad_input"))


@pytest.fixture
def no_tensorflow(monkeypatch):
    """Every way the commands start TensorFlow raises instead."""

    def refuse(*args, **kwargs):
        raise TensorFlowWouldLoad("a bad input reached the point where TensorFlow loads")

    monkeypatch.setattr("automtl.tfimport.import_tensorflow_quietly", refuse)
    monkeypatch.setattr("automtl.devices.configure", refuse)


def test_the_set_is_large_and_every_case_names_its_culprit():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
    assert all(c.fragments for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_before_tensorflow(case, workspace, cli, no_tensorflow):
    if case.needs and importlib.util.find_spec(case.needs) is None:
        pytest.skip(f"needs {case.needs}")
    if case.no_gpu and gpu_seen():
        pytest.skip("a refusal on a machine without a GPU")
    result = cli(*arguments(case, workspace))
    assert result.exit_code == case.code, result.output
    assert "Traceback" not in result.output
    for fragment in case.fragments:
        assert fragment in result.output, (fragment, result.output)
    if case.hidden:
        assert case.hidden not in result.output
    # nothing was created for the refused search: the fresh run folder never appears
    assert not (workspace.root / "fresh").exists()


@pytest.mark.parametrize("fraction", [0, 1, -0.1])
def test_validation_fraction_outside_unit_interval(cli, write_experiment, table_csv, fraction):
    path = write_experiment(data={"train": str(table_csv), "valid_fraction": fraction})
    assert_user_error(cli("search", "--config", path), "data.valid_fraction", "between 0 and 1")


def test_a_default_name_from_an_odd_file_name_is_made_a_name(tmp_path, write_experiment):
    import yaml

    from automtl.config import load_experiment

    raw = yaml.safe_load(write_experiment().read_text())
    del raw["name"]
    path = tmp_path / "my experiment (v2).yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_experiment(path).name == "my_experiment_v2_"


# -- a finished run is never changed by a refused rerun -------------------------------------------
def fingerprint(run):
    """Every file of a run folder, byte for byte."""
    import hashlib

    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.e2e  # its own demo run: it edits split.json, so it cannot share the session's digits_run
def test_a_finished_run_is_intact_after_bad_reruns(cli, tmp_path, monkeypatch):
    """The issue's data loss: the README's Keras Tuner example, run after the quick start, replaced the
    Optuna demo's best/, cut trials.csv and overwrote trial models. Now it and every other bad rerun are
    refused and the run stays byte-for-byte as it was (study, tables, snapshot, best/, trial models)."""
    import yaml

    monkeypatch.chdir(tmp_path)
    first = cli("search", "--demo", "digits", "--trials", "2", "--epochs", "2", "--no-report", "--quiet")
    assert first.exit_code == 0, first.output
    run = tmp_path / "runs" / "digits"
    before = fingerprint(run)
    assert {"study.db", "trials.csv", "trials.json", "experiment.resolved.yaml", "space.yaml", "automtl-run.json",
            "best/automtl.json", "best/model.keras", "trials/00000/model.keras"} <= set(before)

    bad_space = tmp_path / "bad_space.yaml"
    bad_space.write_text("parameters:\n  learning_rate: {float: [-0.1, 0.01]}\n")
    inf_data = tmp_path / "digits_inf.csv"
    lines = (run / "data" / "digits.csv").read_text().splitlines()
    lines[5] = "inf" + lines[5][lines[5].index(","):]
    inf_data.write_text("\n".join(lines) + "\n")
    inf_exp = yaml.safe_load((run / "data" / "experiment.yaml").read_text())
    inf_exp["data"]["train"] = str(inf_data)
    inf_exp["search"]["out"] = str(run)
    (tmp_path / "inf.yaml").write_text(yaml.safe_dump(inf_exp))
    reruns = [
        # the README's Keras Tuner example as it was (no --out of its own)
        (["search", "--demo", "digits", "--backend", "keras-tuner", "--algorithm", "bayesian", "--trials", "3"],
         "holds the optuna study 'digits'"),
        (["search", "--demo", "digits", "--objective", "pareto"], "objective pareto"),
        (["search", "--demo", "digits", "--study", "other"], "study 'other'"),
        (["search", "--demo", "digits", "--storage", f"sqlite:///{tmp_path}/elsewhere.db"], "storage sqlite:///"),
        (["search", "--demo", "digits", "--study", "../../x"], "must be a name"),
        (["search", "--demo", "digits", "--space", bad_space], "learning_rate"),
        (["search", "--config", tmp_path / "inf.yaml"], "infinite value"),
        (["search", "--demo", "digits", "--out", run / "trials"], "lies inside the run folder"),
        (["search", "--demo", "text", "--out", run], "holds demo 'digits'"),
        (["predict", run / "best", "--data", run / "data" / "digits.csv", "--out", run / "trials.csv"],
         "lies inside the run folder"),
        (["report", run, "--out", run / "best" / "automtl.json"], "report is an HTML file"),
        # issue 31: another trial's export replaced best/ (exit 0), and --out RUN/newdir wrote into the run
        (["export", run, "--trial", "0", "--out", run / "best", "--force"], "even with --force"),
        (["export", run, "--trial", "1", "--out", run / "newdir"], f"{run.name}-trial1"),
        (["predict", run / "best", "--data", run / "data" / "digits.csv", "--out", run / "preds.csv"],
         f"{run.name}-predictions.csv"),
    ]
    for args, fragment in reruns:
        assert_user_error(cli(*args), fragment)
        assert fingerprint(run) == before, args
    # issue 31: a hand-edited split.json (every validation row 0) was trained on: now refused, nothing appended
    split = json.loads((run / "split.json").read_text())
    for rows, fragment in (([0] * len(split["valid_rows"]), "more than once"), ([-1], "row -1"),
                           ([10**6], "outside"), ([], "is empty")):
        (run / "split.json").write_text(json.dumps({**split, "valid_rows": rows}))
        before["split.json"] = fingerprint(run)["split.json"]
        assert_user_error(cli("search", "--demo", "digits", "--trials", "3", "--epochs", "2", "--quiet"),
                          "split.json", fragment, "another --out")
        assert fingerprint(run) == before, rows
    assert not (tmp_path / "x").exists() and not (run / "keras_tuner").exists()


# -- no traceback reaches a user -------------------------------------------------------------------
@pytest.fixture
def fake_run(tmp_path):
    return Workspace(tmp_path / "ws").run


def _raising(exc):
    def fail(*args, **kwargs):
        raise exc
    return fail


@pytest.mark.parametrize("exc, fragments", [
    (PermissionError(13, "Permission denied", "/srv/runs/x/trials.csv"), ("Permission denied", "/srv/runs/x/trials.csv")),
    (OSError(28, "No space left on device", "/srv/runs/x"), ("No space left on device",)),
    (ModuleNotFoundError("No module named 'psycopg'", name="psycopg"), ("'psycopg' is not installed", "pip install psycopg")),
    (ValueError("Requested the deserialization of a `Lambda` layer ... pass `safe_mode=False` to the loading function"),
     ("safe mode refused", "Lambda")),
    (MemoryError(), ("out of memory",)),
])
def test_environment_errors_are_one_line_exit_2(cli, fake_run, monkeypatch, exc, fragments):
    monkeypatch.setattr("automtl.rundir.trials_view.select", _raising(exc))
    result = cli("trials", fake_run)
    assert_user_error(result, *fragments)
    assert len(result.output.strip().splitlines()) == 1


def test_an_internal_error_is_one_line_and_its_traceback_is_kept_in_the_run(cli, fake_run, monkeypatch):
    monkeypatch.delenv("AUTOMTL_DEBUG", raising=False)
    monkeypatch.setattr("automtl.rundir.trials_view.select", _raising(ZeroDivisionError("a bug")))
    result = cli("trials", fake_run)
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.output.strip()
    assert "\n" not in line and "internal error" in line and "ZeroDivisionError: a bug" in line
    log = fake_run / "automtl-error.log"
    assert str(log) in line
    assert "Traceback" in log.read_text() and "ZeroDivisionError: a bug" in log.read_text()


def test_an_internal_error_outside_a_run_goes_to_a_temporary_log(cli, tmp_path, monkeypatch):
    import re

    monkeypatch.setattr("automtl.export.predict.plan_predict", _raising(KeyError("oops")))
    result = cli("predict", tmp_path, "--data", tmp_path / "d.csv", "--out", tmp_path / "p.csv")
    assert result.exit_code == 1 and "Traceback" not in result.output
    path = re.search(r"traceback is in (\S+\.log)", result.output).group(1)
    try:
        assert "KeyError: 'oops'" in open(path).read()
    finally:
        import os

        os.unlink(path)
