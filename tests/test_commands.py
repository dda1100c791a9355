"""The everyday commands around a finished run: trials, export, predict, dashboard."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from conftest import TINY_SPACE, experiment_dict, make_table

#: every test here runs a search (or reads one that a module fixture ran): the e2e loop
pytestmark = pytest.mark.e2e


def invoke(*args: Any) -> Any:
    from automtl.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished three-trial search on the tiny regression + classification table."""
    tmp = tmp_path_factory.mktemp("tiny")
    make_table().to_csv(tmp / "data.csv", index=False)
    (tmp / "space.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    exp = experiment_dict(tmp / "data.csv", tmp / "space.yaml", out=str(tmp / "run"), trials=3, epochs=3,
                          export_formats=["saved_model", "onnx"])
    (tmp / "experiment.yaml").write_text(yaml.safe_dump(exp))
    result = invoke("search", "--config", tmp / "experiment.yaml", "--no-report")
    assert result.exit_code == 0, result.output
    return tmp / "run"


@pytest.fixture
def demo_run(digits_run: Path) -> Path:
    """The session's digits run (``conftest.digits_run``): the demo searched once for every test file."""
    return digits_run


# -- trials ----------------------------------------------------------------------------------
def test_trials_json_parses_and_is_sorted_by_score(tiny_run):
    result = invoke("trials", tiny_run, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    scores = [t["score"] for t in doc["trials"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert {t["name"] for t in doc["tasks"]} == {"price", "kind"}
    first = doc["trials"][0]
    assert {"price.rmse", "kind.accuracy"} <= set(first["metrics"])
    assert isinstance(first["params"]["trunk.units"], int)  # types survive, unlike a CSV
    assert not (tiny_run / "report.html").exists()  # --no-report


def test_trials_sort_by_task_metric_uses_its_direction(tiny_run):
    rmse = [t["metrics"]["price.rmse"] for t in json.loads(invoke("trials", tiny_run, "--json", "--sort", "price.rmse").output)["trials"]]
    assert rmse == sorted(rmse)  # lower RMSE is better: ascending
    acc = [t["metrics"]["kind.accuracy"] for t in json.loads(invoke("trials", tiny_run, "--json", "--sort", "kind.accuracy").output)["trials"]]
    assert acc == sorted(acc, reverse=True)
    forced = json.loads(invoke("trials", tiny_run, "--json", "--sort", "score", "--ascending").output)["trials"]
    assert [t["score"] for t in forced] == sorted(t["score"] for t in forced)


def test_trials_table_and_disk_use(tiny_run):
    result = invoke("trials", tiny_run, "--sort", "price")
    assert result.exit_code == 0, result.output
    assert "price.rmse" in result.output and "kind.accuracy" in result.output
    assert "3 trial model(s) kept" in result.output and "KB" in result.output


def test_trials_bad_sort_and_bad_folder(tiny_run, tmp_path):
    bad = invoke("trials", tiny_run, "--sort", "price.mape")
    assert bad.exit_code == 2 and "price.mape" in bad.output and "price.rmse" in bad.output
    assert "Traceback" not in bad.output
    missing = invoke("trials", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "run folder not found" in missing.output
    empty = invoke("trials", tmp_path)
    assert empty.exit_code == 2 and "trials.json" in empty.output


# -- export ----------------------------------------------------------------------------------
def test_export_any_trial_matches_best_format(tiny_run, tmp_path):
    doc = json.loads(invoke("trials", tiny_run, "--json").output)
    worst = doc["trials"][-1]["number"]
    result = invoke("export", tiny_run, "--trial", worst, "--out", tmp_path / "worst")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "worst" / "automtl.json").read_text())
    best = json.loads((tiny_run / "best" / "automtl.json").read_text())
    assert manifest["trial"]["number"] == worst
    assert set(manifest) == (set(best) - {"refit"}) | {"exported_from"}  # best/ is refitted, a trial export is not
    assert manifest["inputs"] == best["inputs"]  # plugins refitted identically on the same split
    assert [t["classes"] for t in manifest["tasks"] if t["name"] == "kind"] == [["basic", "premium"]]
    assert (tmp_path / "worst" / "saved_model" / "saved_model.pb").exists()
    assert (tmp_path / "worst" / "model.keras").exists()


def test_export_unknown_trial_is_a_clear_error(tiny_run, tmp_path):
    result = invoke("export", tiny_run, "--trial", 42, "--out", tmp_path / "x")
    assert result.exit_code == 2
    assert "no trial 42" in result.output and "exportable trials: 0, 1, 2" in result.output
    assert not (tmp_path / "x").exists()


def test_best_holds_the_formats_in_search_export_formats(tiny_run):
    manifest = json.loads((tiny_run / "best" / "automtl.json").read_text())
    assert (tiny_run / "best" / "model.onnx").exists() and set(manifest["formats"]) == {"saved_model", "onnx"}
    assert all(o["ok"] for o in manifest["formats"]["onnx"]["parity"]["outputs"].values())


def test_export_onnx_and_tflite_print_parity_and_latency(tiny_run, tmp_path):
    result = invoke("export", tiny_run, "--trial", 0, "--out", tmp_path / "m", "--format", "onnx,tflite")
    assert result.exit_code == 0, result.output
    assert "parity: max abs diff" in result.output and "latency" in result.output
    assert {p.name for p in (tmp_path / "m").iterdir()} >= {"model.onnx", "model.tflite", "preprocess.py",
                                                            "preprocessing.json", "saved_model", "automtl.json"}


def tree(folder: Path) -> dict[str, Any]:
    """Every file's bytes and every entry's mode: "byte-for-byte unchanged" made checkable."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None, p.stat().st_mode)
            for p in sorted(folder.rglob("*"))}


def test_export_never_destroys_a_run(tiny_run):
    from helpers import assert_user_error

    before = tree(tiny_run)
    for out, says in ((tiny_run, "is the run folder"), (tiny_run / "trials", "lies inside the run folder"),
                      (tiny_run / "trials" / "00000", "lies inside the run folder"),
                      (tiny_run / "best", "lies inside the run folder"), (tiny_run / "new", "lies inside the run folder"),
                      (tiny_run.parent, "holds the run folder")):
        for force in ([], ["--force"]):
            assert_user_error(invoke("export", tiny_run, "--trial", 0, "--out", out, *force), says)
    assert tree(tiny_run) == before
    assert_user_error(invoke("export", tiny_run, "--trial", 0, "--out", tiny_run, "--layout", "tf-serving"),
                      "is the run folder")
    assert tree(tiny_run) == before


def test_export_replaces_only_its_own_folders_and_is_world_readable(tiny_run, tmp_path):
    from helpers import assert_user_error

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert_user_error(invoke("export", tiny_run, "--trial", 0, "--out", mine), "not an earlier automtl export",
                      "--force")
    assert (mine / "notes.txt").read_text() == "keep me"
    import os

    old = os.umask(0o022)
    try:
        assert invoke("export", tiny_run, "--trial", 0, "--out", mine, "--force").exit_code == 0
        again = invoke("export", tiny_run, "--trial", 1, "--out", mine)  # an earlier export: replaced
    finally:
        os.umask(old)
    assert again.exit_code == 0, again.output
    assert json.loads((mine / "automtl.json").read_text())["trial"]["number"] == 1
    assert not (mine / "notes.txt").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    for path in (mine, mine / "saved_model", mine / "automtl.json", mine / "model.keras"):
        assert path.stat().st_mode & 0o044 == 0o044, path  # others can read (umask 022), not mkdtemp's 0700
    assert (tiny_run / "best").stat().st_mode & 0o055 == 0o055


# -- predict ---------------------------------------------------------------------------------
def demo_validation(run: Path) -> pd.DataFrame:
    """The demo's validation rows, split exactly as the search split them."""
    from automtl.data.prepare import load_tables
    from automtl.rundir.folder import load_experiment

    _, valid = load_tables(load_experiment(run))
    return pd.DataFrame(valid.columns)


def test_predict_matches_saved_model_on_demo_validation(demo_run, tmp_path):
    import tensorflow as tf

    valid = demo_validation(demo_run)
    valid["id"] = np.arange(len(valid))
    valid.to_csv(tmp_path / "valid.csv", index=False)
    result = invoke("predict", demo_run / "best", "--data", tmp_path / "valid.csv", "--out", tmp_path / "pred.csv",
                    "--keep", "id", "--batch-size", "100", "--probabilities", "list")
    assert result.exit_code == 0, result.output
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == ["id", "digit.class_id", "digit.label", "digit.probabilities", "slant.value"]
    assert len(pred) == len(valid) == 359
    # by default: one labelled column per class, named after the class
    result = invoke("predict", demo_run / "best", "--data", tmp_path / "valid.csv", "--out", tmp_path / "cols.csv")
    assert result.exit_code == 0, result.output
    cols = pd.read_csv(tmp_path / "cols.csv")
    assert list(cols.columns) == ["digit.class_id", "digit.label", *[f"digit.p.{d}" for d in range(10)], "slant.value"]

    serve = tf.saved_model.load(str(demo_run / "best" / "saved_model")).signatures["serving_default"]
    pixels = valid[[f"px{i}" for i in range(64)]].to_numpy(np.float32)
    want = {k: v.numpy() for k, v in serve(pixels=tf.constant(pixels)).items()}
    np.testing.assert_allclose(pred["slant.value"], want["slant.value"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pred["digit.class_id"], want["digit.class_id"])
    assert list(pred["digit.label"].astype(str)) == [b.decode() for b in want["digit.label"]]
    probs = np.array([json.loads(p) for p in pred["digit.probabilities"]])
    np.testing.assert_allclose(probs, want["digit.probabilities"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cols[[f"digit.p.{d}" for d in range(10)]].to_numpy(), want["digit.probabilities"],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".npz"])
def test_predict_reads_and_writes_other_formats(demo_run, tmp_path, suffix):
    valid = demo_validation(demo_run).head(40)
    if suffix == ".parquet":
        valid.to_parquet(tmp_path / "in.parquet")
    elif suffix == ".jsonl":
        valid.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    else:  # the manifest maps tabular inputs to columns, so an NPZ of named 1-D columns works too
        np.savez(tmp_path / "in.npz", **{c: valid[c].to_numpy() for c in valid.columns})
    out = tmp_path / f"out{suffix}"
    result = invoke("predict", demo_run / "best", "--data", tmp_path / f"in{suffix}", "--out", out,
                    "--probabilities", "list")
    assert result.exit_code == 0, result.output
    if suffix == ".npz":
        got = dict(np.load(out))  # no pickle needed: labels are unicode arrays
        assert got["digit.probabilities"].shape == (40, 10)
        assert got["digit.label"].dtype.kind == "U"
    else:
        frame = pd.read_parquet(out) if suffix == ".parquet" else pd.read_json(out, lines=True)
        assert len(frame) == 40 and len(frame["digit.probabilities"].iloc[0]) == 10
        np.testing.assert_allclose([sum(p) for p in frame["digit.probabilities"]], 1.0, rtol=1e-4)


def test_predict_names_a_missing_column(demo_run, tmp_path):
    demo_validation(demo_run).drop(columns=["px7"]).head(5).to_csv(tmp_path / "bad.csv", index=False)
    result = invoke("predict", demo_run / "best", "--data", tmp_path / "bad.csv", "--out", tmp_path / "o.csv")
    assert result.exit_code == 2
    assert "no column 'px7'" in result.output and "pixels" in result.output and "bad.csv" in result.output
    assert not (tmp_path / "o.csv").exists()


def test_predict_bad_inputs_are_clear_errors(demo_run, tmp_path):
    frame = demo_validation(demo_run).head(5).astype(object)
    frame.loc[2, "px3"] = "dark"
    frame.to_csv(tmp_path / "text.csv", index=False)
    text = invoke("predict", demo_run / "best", "--data", tmp_path / "text.csv", "--out", tmp_path / "o.csv")
    assert text.exit_code == 2 and "column 'px3', row 3: 'dark' is not a number" in text.output
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "x.png")
    image = invoke("predict", demo_run / "best", "--data", tmp_path / "x.png", "--out", tmp_path / "o.csv")
    assert image.exit_code == 2 and "feeds a model with one image input;" in image.output
    out = invoke("predict", demo_run / "best", "--data", tmp_path / "text.csv", "--out", tmp_path / "o.xlsx")
    assert out.exit_code == 2 and "unsupported output type" in out.output
    model = invoke("predict", tmp_path, "--data", tmp_path / "text.csv", "--out", tmp_path / "o.csv")
    assert model.exit_code == 2 and "exported model folder" in model.output


def test_predict_shows_a_bar_on_a_terminal_for_large_inputs(demo_run, tmp_path):
    from io import StringIO

    from rich.console import Console

    from automtl.export.predict import predict

    demo_validation(demo_run).to_csv(tmp_path / "valid.csv", index=False)
    buffer = StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    summary = predict(demo_run / "best", tmp_path / "valid.csv", tmp_path / "p.csv", batch_size=64, console=console)
    assert summary.rows == 359
    assert "359/359" in buffer.getvalue() and "rows" in buffer.getvalue()
    quiet = StringIO()
    predict(demo_run / "best", tmp_path / "valid.csv", tmp_path / "p.csv", batch_size=64,
            console=Console(file=quiet, force_terminal=False))
    assert quiet.getvalue() == ""  # pipes and logs get no bar


# -- dashboard -------------------------------------------------------------------------------
def test_dashboard_without_the_extra_says_how_to_install(tiny_run, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna_dashboard" else real(name, *a))
    result = invoke("dashboard", tiny_run)
    assert result.exit_code == 2
    assert "optuna-dashboard is not installed" in result.output and "automtl[dashboard]" in result.output


def test_dashboard_serves_the_run_study(tiny_run):
    pytest.importorskip("optuna_dashboard", reason="the optional 'dashboard' extra is not installed")
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "automtl.cli", "dashboard", str(tiny_run), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        body = ""
        for _ in range(60):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert '"study_name": "tiny"' in body.replace('":"', '": "'), body[:300]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_new_commands_have_help():
    for command in ("report", "trials", "export", "predict", "dashboard"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


def test_dashboard_refuses_runs_without_an_optuna_study(tiny_run, tmp_path):
    pytest.importorskip("optuna_dashboard", reason="the optional 'dashboard' extra is not installed")
    import shutil

    copy = tmp_path / "kt"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("study.db", "best", "trials"))
    snapshot = copy / "experiment.resolved.yaml"
    snapshot.write_text(snapshot.read_text().replace("backend: optuna", "backend: keras-tuner"))
    result = invoke("dashboard", copy)
    assert result.exit_code == 2 and "backend 'keras-tuner'" in result.output and "automtl report" in result.output


# -- progress --------------------------------------------------------------------------------
def test_progress_gives_logs_one_unwrapped_line_per_trial_and_quiet_none():
    from io import StringIO

    from rich.console import Console

    from automtl.core.trial import TrialRecord
    from automtl.run.progress import SearchProgress

    record = TrialRecord(number=3, state="complete", score=0.8123, duration_s=1.5,
                         params={"strategy": "alternating", "trunk.depth": 2, "trunk.units": 128, "learning_rate": 0.003},
                         metrics={"price.rmse": 3.21, "kind.accuracy": 0.9})
    log = StringIO()
    progress = SearchProgress(Console(file=log, width=40), {"price": "rmse", "kind": "accuracy"}, epochs=5)
    progress.start(10, 0)
    progress.epoch(3, 1, 0.5)  # no live bar off a terminal: nothing printed per epoch
    progress.trial(record)
    progress.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and "\x1b" not in lines[0]
    assert "trial   3" in lines[0] and "price.rmse=3.21" in lines[0] and "new best" in lines[0]
    quiet = StringIO()
    silent = SearchProgress(Console(file=quiet, width=40), {"price": "rmse"}, epochs=5, quiet=True)
    silent.start(10, 0)
    silent.trial(record)
    silent.close()
    assert quiet.getvalue() == ""
