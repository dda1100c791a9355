"""A search whose tasks each name their metric: ranked, recorded and reported by it, beside chance level."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

#: a search end to end: the e2e loop
pytestmark = pytest.mark.e2e


def survey(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A health-survey-like table: ``health`` is 80 % one class, and the features say which rows are not;
    ``noise`` is 85 % one class and unrelated to every feature (nothing beats always answering it)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    risk = x[:, 0] + 0.5 * x[:, 1]
    health = np.where(risk > 1.2, np.where(x[:, 2] > 0, "poor", "average"), "good")
    noise = np.where(rng.random(n) < 0.85, "no", "yes")
    price = 20 + 3 * x[:, 3] + rng.normal(size=n)
    return pd.DataFrame({**{f"x{i}": x[:, i] for i in range(4)}, "health": health, "noise": noise, "price": price})


def test_metric_per_task_end_to_end_with_chance_level(cli, tiny_space: Path, tmp_path: Path):
    survey().to_csv(tmp_path / "survey.csv", index=False)
    exp = {
        "name": "survey",
        "data": {"train": str(tmp_path / "survey.csv"), "valid_fraction": 0.25},
        "inputs": [{"name": "f", "type": "tabular", "numeric": ["x*"]}],
        "tasks": [
            {"name": "health", "type": "classification", "target": "health", "metric": "log_loss",
             "class_weight": "balanced"},
            {"name": "noise", "type": "classification", "target": "noise"},
            {"name": "price", "type": "regression", "target": "price", "metric": "mae"},
        ],
        "space": str(tiny_space),
        "search": {"trials": 2, "epochs": 6, "seed": 0, "trials_per_process": 0, "baselines": "off",
                   "out": str(tmp_path / "run")},
    }
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    result = cli("search", "--config", tmp_path / "exp.yaml")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    doc = json.loads((run / "trials.json").read_text())
    tasks = {t["name"]: t for t in doc["tasks"]}
    assert (tasks["health"]["primary_metric"], tasks["health"]["direction"]) == ("log_loss", "minimize")
    assert (tasks["price"]["primary_metric"], tasks["price"]["direction"]) == ("mae", "minimize")
    assert tasks["noise"]["primary_metric"] == "accuracy"
    for t in tasks.values():  # every task has its chance level, on the validation rows, by its own metric
        assert t["reference"]["metric"] == t["primary_metric"] and t["reference"]["value"] is not None
    # the other metrics are still recorded
    trial = next(t for t in doc["trials"] if t["state"] == "complete")
    assert {"health.accuracy", "health.auc", "health.balanced_accuracy", "price.rmse", "price.r2"} <= set(trial["metrics"])
    # the objective ranks each task by its metric: log loss as skill over class frequencies, MAE as its skill
    ref = tasks["health"]["reference"]
    best = max((t for t in doc["trials"] if t["state"] == "complete"), key=lambda t: t["score"])
    assert best["metrics"]["health.log_loss"] < ref["value"]  # learned more than the class frequencies
    assert best["scores"]["health"] > ref["score"]
    # the summary: the leaderboard's header, the chance lines, and the warning for the task that learned nothing
    out = " ".join(result.output.split())
    assert "chance level: health.log_loss" in out and "noise.accuracy" in out
    assert "chance level of health.log_loss: best trial" in out
    assert "warning: the best trial does not beat chance level on task 'noise'" in out
    assert "task 'health'" not in out.split("warning:", 1)[1].split("all trials:")[0]
    report = (run / "report.html").read_text()
    assert "chance level" in report and "does not beat chance level on task &#x27;noise&#x27;" in report
    listed = cli("trials", run)
    assert listed.exit_code == 0 and "chance level" in listed.output
    # predict: one labelled probability column per class
    pd.DataFrame(survey(20, seed=1)).to_csv(tmp_path / "new.csv", index=False)
    pred_out = tmp_path / "pred.csv"
    assert cli("predict", run / "best", "--data", tmp_path / "new.csv", "--out", pred_out).exit_code == 0
    pred = pd.read_csv(pred_out)
    assert {"health.p.average", "health.p.good", "health.p.poor", "noise.p.no", "noise.p.yes"} <= set(pred.columns)
    np.testing.assert_allclose(pred[["health.p.average", "health.p.good", "health.p.poor"]].sum(axis=1), 1.0, rtol=1e-5)
