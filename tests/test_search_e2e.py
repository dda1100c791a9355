"""End to end through the CLI: a user's CSV with a regression and a classification task."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from conftest import default_ending

#: every test here runs a search (or reads one that a module fixture ran): the e2e loop
pytestmark = pytest.mark.e2e


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_search_from_config_exports_and_records(cli, write_experiment, tmp_path):
    path = write_experiment()
    path.write_text(yaml.safe_dump(default_ending(yaml.safe_load(path.read_text()))))
    result = cli("search", "--config", path, "--trials", "2", "--epochs", "3")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    rows = read_rows(run / "trials.csv")
    assert [r["state"] for r in rows] == ["complete", "complete"]
    for col in ("score", "duration_s", "price.rmse", "kind.accuracy", "param.strategy", "param.trunk.units"):
        assert rows[0][col] != "", col
    manifest = json.loads((run / "best" / "automtl.json").read_text())
    assert {i["name"] for i in manifest["inputs"]} == {"features", "city"}
    tasks = {t["name"]: t for t in manifest["tasks"]}
    assert tasks["kind"]["outputs"] == ["kind.class_id", "kind.label", "kind.probabilities"]
    assert tasks["price"]["outputs"] == ["price.value"]
    assert tasks["kind"]["classes"] == ["basic", "premium"]
    best = max(rows, key=lambda r: float(r["score"]))
    assert manifest["trial"]["number"] == int(best["number"])
    assert "tensorflow" in manifest["versions"]
    assert (run / "best" / "model.keras").exists()
    assert (run / "best" / "saved_model" / "saved_model.pb").exists()
    assert "Leaderboard" in result.output and "best" in result.output
    # search.refit (default): best/ is the best parameters trained on training + validation rows (all 300)
    assert manifest["refit"] == {"rows": 300, "epochs": int(best["best_epoch"]), "metrics": manifest["refit"]["metrics"]}
    assert (run / "trials" / f"{int(best['number']):05d}" / "refit.keras").exists()


def test_rerun_resumes_study(cli, write_experiment, tmp_path):
    exp = write_experiment()
    assert cli("search", "--config", exp, "--trials", "2", "--epochs", "2").exit_code == 0
    first = read_rows(tmp_path / "run" / "trials.csv")
    result = cli("search", "--config", exp, "--trials", "3", "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output
    rows = read_rows(tmp_path / "run" / "trials.csv")
    assert len(rows) == 3
    assert rows[:2] == first  # finished trials are kept untouched
    again = cli("search", "--config", exp, "--trials", "3", "--epochs", "2")
    assert again.exit_code == 0
    assert len(read_rows(tmp_path / "run" / "trials.csv")) == 3  # nothing new: the study is full
