"""Grouped and cross-validated splits: groups never straddle a split, the run records its split and keeps it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from automtl.config import DataConfig, GroupRule, build_experiment
from automtl.data.split import (AUTO_FOLDS, SPLIT_FILE, check_no_shared_groups, fold_rows, group_labels,
                                holdout_rows, recorded_split)
from automtl.data.table import Table
from automtl.errors import ConfigError, DataError
from conftest import default_ending, experiment_dict, make_table
from helpers import assert_user_error


def sites(n_groups: int = 12, per: int = 10) -> np.ndarray:
    return np.repeat(np.array([f"site{i}" for i in range(n_groups)], dtype=object), per)


def test_grouped_holdout_keeps_groups_whole_and_counts_groups():
    table = Table("d.csv", {"site": sites(), "x": np.arange(120.0)})
    groups = group_labels(table, GroupRule(column="site"))
    valid = holdout_rows(table, 0.25, seed=3, groups=groups)
    inside, outside = set(groups[valid]), set(np.delete(groups, valid))
    assert not inside & outside
    assert len(inside) == 3  # a quarter of the 12 groups, whatever their sizes


def test_folds_cover_every_row_once_and_never_split_a_group():
    groups = np.array([f"g{i}" for i in [0] * 30 + [1] * 5 + [2] * 5 + [3] * 10 + [4] * 10 + [5] * 20], dtype=object)
    table = Table("d.csv", {"g": groups})
    folds = fold_rows(table, 3, seed=0, groups=groups.astype(str))
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(groups)))
    for a in range(3):
        for b in range(a + 1, 3):
            assert not set(groups[folds[a]]) & set(groups[folds[b]])
    with pytest.raises(DataError, match="6 groups cannot make data.folds=7"):
        fold_rows(table, 7, seed=0, groups=groups.astype(str))


def test_group_pattern_reads_the_file_name_prefix():
    paths = np.array(["/data/tiles/sceneA_r0_c1.png", "rel/sceneA_r1_c1.png", "sceneB_r0_c0.png"], dtype=object)
    table = Table("boxes.csv", {"image_path": paths})
    assert group_labels(table, GroupRule(column="image_path", pattern=r"^([^_]+)_")).tolist() == ["sceneA", "sceneA", "sceneB"]
    with pytest.raises(DataError, match=r"row 3: data.group pattern .* does not match 'sceneB_r0_c0.png'"):
        group_labels(table, GroupRule(column="image_path", pattern=r"^scene[A]"))


def test_bad_groups_are_clear_errors():
    table = Table("d.csv", {"site": np.array(["a", None, "b"], dtype=object)})
    with pytest.raises(DataError, match=r"d.csv: row 2: empty 'site' \(data.group\)"):
        group_labels(table, GroupRule(column="site"))
    with pytest.raises(DataError, match=r"no column 'patient' \(needed by data.group\)"):
        group_labels(table, GroupRule(column="patient"))
    with pytest.raises(ValueError, match="not a regular expression"):
        GroupRule(column="site", pattern="(")


def test_a_validation_file_sharing_groups_with_training_is_refused():
    train = Table("train.csv", {"site": np.array(["a", "b", "c"], dtype=object)})
    valid = Table("valid.csv", {"site": np.array(["c", "d"], dtype=object)})
    with pytest.raises(DataError, match=r"valid.csv: 1 group\(s\) .* in both the training and the validation file \(c\)"):
        check_no_shared_groups(train, valid, GroupRule(column="site"))


def test_split_is_recorded_read_back_and_guarded(tmp_path):
    table = Table("d.csv", {"site": sites(), "x": np.arange(120.0)})
    data = DataConfig(train=Path("d.csv"), group="site", valid_fraction=0.25, split_seed=1)
    first = recorded_split(data, table, tmp_path, write=True)
    doc = json.loads((tmp_path / SPLIT_FILE).read_text())
    assert doc["valid_rows"] == first.valid[0].tolist() and len(doc["valid_groups"]) == 3
    # Another seed would split differently, but the recorded split is what a resumed run uses...
    again = recorded_split(data, table, tmp_path)
    assert again.valid[0].tolist() == first.valid[0].tolist()
    # ...and a run never silently changes its split.
    with pytest.raises(ConfigError, match=r"split_seed: 1 -> 2"):
        recorded_split(data.model_copy(update={"split_seed": 2}), table, tmp_path)
    with pytest.raises(DataError, match="the training file changed since this run split it"):
        recorded_split(data, table.take(np.arange(100)), tmp_path)


def test_folds_need_the_training_file_only(tmp_path):
    raw = experiment_dict(tmp_path / "d.csv", tmp_path / "s.yaml")
    raw["data"].update(valid=str(tmp_path / "v.csv"), folds=3)
    with pytest.raises(ConfigError, match="data: 'folds' cross-validates the training file.*remove 'valid'"):
        build_experiment(raw, "exp.yaml", tmp_path)
    raw["data"].pop("valid")
    raw["search"].update(backend="keras-tuner", algorithm="hyperband")
    with pytest.raises(ConfigError, match="data.folds with keras-tuner's hyperband"):
        build_experiment(raw, "exp.yaml", tmp_path)
    raw["data"]["folds"] = 1
    with pytest.raises(ConfigError, match=r"data.folds: Input should be greater than or equal to 2"):
        build_experiment(raw, "exp.yaml", tmp_path)


def test_a_small_table_is_cross_validated_unless_the_experiment_names_its_split(tmp_path, tiny_space, monkeypatch):
    """A few hundred rows and no split named: 5 folds, resolved before the data is split, so the run's
    snapshot, resume and export see data.folds; any named split, or a larger table, keeps the hold-out."""
    from automtl.data import split
    from automtl.run.search import check_files

    path = tmp_path / "small.csv"
    make_table(150).to_csv(path, index=False)
    raw = experiment_dict(path, tiny_space, out=str(tmp_path / "run"))
    del raw["data"]["valid_fraction"]
    checked = check_files(build_experiment(raw, "exp.yaml", tmp_path))
    assert checked.auto_folds and checked.exp.data.folds == AUTO_FOLDS and len(checked.prepared.folds) == AUTO_FOLDS
    assert sum(len(f.valid) for f in checked.prepared.folds) == len(checked.prepared.train) == 150
    for named in ({"valid_fraction": 0.2}, {"folds": 3}):
        checked = check_files(build_experiment({**raw, "data": {**raw["data"], **named}}, "exp.yaml", tmp_path))
        assert not checked.auto_folds and checked.exp.data.folds == named.get("folds")
    # a grouped split, other inputs than tables, or too few rows for ten per fold: the hold-out
    assert split.auto_folds(DataConfig(train=Path("d.csv"), group="city"), 300, True) is None
    assert split.auto_folds(DataConfig(train=Path("d.csv")), 300, False) is None
    assert split.auto_folds(DataConfig(train=Path("d.csv")), 10 * AUTO_FOLDS - 1, True) is None
    # the hold-out also when the backend's algorithm continues trials (Keras Tuner's hyperband), or when an
    # input does not declare that its small tables cross-validate (InputEncoder.small_data_folds)
    tuned = {**raw, "search": {**raw["search"], "backend": "keras-tuner", "algorithm": "hyperband"}}
    assert not check_files(build_experiment(tuned, "exp.yaml", tmp_path)).auto_folds
    from automtl.core import plugins

    monkeypatch.setattr(plugins.load("input", "tabular", where="test"), "small_data_folds", False)
    assert not check_files(build_experiment(raw, "exp.yaml", tmp_path)).auto_folds
    monkeypatch.undo()
    monkeypatch.setattr(split, "SMALL_TABLE_ROWS", 149)
    checked = check_files(build_experiment(raw, "exp.yaml", tmp_path))
    assert not checked.auto_folds and checked.exp.data.folds is None and checked.prepared.valid is not None


@pytest.fixture
def grouped_csv(tmp_path: Path) -> Path:
    frame = make_table(120)
    frame["site"] = sites()
    path = tmp_path / "grouped.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.e2e
def test_cross_validated_grouped_search_end_to_end(cli, tmp_path, grouped_csv, tiny_space):
    """3 folds by site: the folds' mean ranks trials, the best is retrained on every row and exported."""
    raw = default_ending(experiment_dict(grouped_csv, tiny_space, out=str(tmp_path / "run"), epochs=2))
    raw["data"].update(group="site", folds=3)
    path = tmp_path / "cv.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = cli("search", "--config", path, "--no-report", "--ensemble", 2)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # the console wraps at 80 columns
    assert "120 training rows in 3 cross-validation folds (40 validate in each), grouped by 'site': 12 groups" in said
    # Single-task baselines are cross-validated on the same folds and compared on out-of-fold outputs:
    # every training row (all are labelled for both tasks), each fold in its own scale.
    baselines = json.loads((tmp_path / "run" / "baselines.json").read_text())
    assert {t["task"] for t in baselines["tasks"]} == {"price", "kind"} and baselines["trainings"] == 2 * 3
    assert baselines["delta_m"] is not None and all(t["interval"] is not None for t in baselines["tasks"])
    assert "(out-of-fold, 3 folds)" in said and "Single-task baselines" in said
    for t in baselines["tasks"]:
        trial = tmp_path / "run" / t["folder"] / "trials" / f"{t['trial']:05d}"
        with np.load(trial / "valid_pred.npz") as pred:
            assert len(pred[t["task"]]) == 120  # out-of-fold: one output per training row
        assert not (trial / "model.keras").exists() and t["best_epoch"] >= 1
    # The ensemble is selected on every row's out-of-fold outputs; its members train on every row.
    ensemble = json.loads((tmp_path / "run" / "ensemble" / "automtl.json").read_text())
    assert ensemble["cross_validation"]["folds"] == 3 and "out-of-fold" in ensemble["cross_validation"]["metrics"]
    for member in ensemble["ensemble"]["members"]:
        assert (tmp_path / "run" / "trials" / f"{member['trial']:05d}" / "model.keras").exists()
    assert ensemble["ensemble"]["score"] >= ensemble["ensemble"]["best_single"]["score"] - 1e-9
    assert "x 3 folds (each trial costs 3 trainings)" in said
    run = tmp_path / "run"
    split = json.loads((run / SPLIT_FILE).read_text())
    assert split["settings"]["folds"] == 3 and len(split["folds"]) == 3
    assert sorted(g for f in split["folds"] for g in f["valid_groups"]) == sorted(set(sites()))
    history = json.loads((run / "trials" / "00000" / "history.json").read_text())
    assert {"fold1.objective", "fold2.objective", "fold3.objective"} <= set(history[0])
    manifest = json.loads((run / "best" / "automtl.json").read_text())
    best = manifest["trial"]
    assert manifest["cross_validation"]["folds"] == 3 and manifest["cross_validation"]["epochs"] == best["best_epoch"]
    assert "retraining trial" in said and "on all 120 training rows" in said
    # Any other trial exports the same way (retrained on every row of the same split).
    other = 1 - best["number"]
    result = cli("export", run, "--trial", other, "--out", tmp_path / "other")
    assert result.exit_code == 0, result.output
    assert (run / "trials" / f"{other:05d}" / "model.keras").exists()
    # A baseline exports the same way: trained on every row for its best epoch count.
    result = cli("export", run, "--baseline", "price", "--out", tmp_path / "price_alone")
    assert result.exit_code == 0, result.output
    alone = json.loads((tmp_path / "price_alone" / "automtl.json").read_text())
    assert alone["baseline"]["task"] == "price" and alone["cross_validation"]["folds"] == 3
    assert [t["name"] for t in alone["tasks"]] == ["price"]
    # Distillation would score the student on a validation split too: refused, saying why (exit 2).
    result = cli("distill", run, "--out", tmp_path / "student")
    assert_user_error(result, "cross-validates")
    assert not (tmp_path / "student").exists()
    # The leaderboard with every parameter.
    result = cli("trials", run, "--params")
    assert result.exit_code == 0 and "learning_rate=" in result.output and "head.price.units=" in result.output
    # Rerunning the finished search (another ensemble size: the search runs again, with no trial
    # left to run) reuses the baselines, keeping what their export trains for.
    result = cli("search", "--config", path, "--no-report", "--ensemble", 3)
    assert result.exit_code == 0, result.output
    again = json.loads((run / "baselines.json").read_text())
    assert again["trainings"] == 0
    assert [t["best_epoch"] for t in again["tasks"]] == [t["best_epoch"] for t in baselines["tasks"]]
    # Resuming with other split settings is refused, naming what changed; nothing is overwritten.
    raw["data"]["folds"] = 4
    path.write_text(yaml.safe_dump(raw))
    before = (run / SPLIT_FILE).read_text()
    result = cli("search", "--config", path, "--trials", 3)
    assert_user_error(result, "split.json", "folds: 3 -> 4")
    assert (run / SPLIT_FILE).read_text() == before


@pytest.mark.e2e
def test_grouped_holdout_search_records_its_split_for_resume_and_export(cli, tmp_path, grouped_csv, tiny_space):
    """A grouped hold-out in a trial process: split.json names the validating rows and groups; export reads it."""
    raw = experiment_dict(grouped_csv, tiny_space, out=str(tmp_path / "run"), epochs=2, trials=1,
                          trials_per_process=1)
    raw["data"].update(group="site", valid_fraction=0.25)
    path = tmp_path / "grouped.yaml"
    path.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    # A refused search (a column the data lacks) writes no split: the check writes nothing.
    raw["data"]["group"] = "patient"
    path.write_text(yaml.safe_dump(raw))
    assert_user_error(cli("search", "--config", path, "--no-report"), "no column 'patient'", "data.group")
    assert not (run / SPLIT_FILE).exists()
    raw["data"]["group"] = "site"
    path.write_text(yaml.safe_dump(raw))
    result = cli("search", "--config", path, "--no-report")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "90 training / 30 validation rows, grouped by 'site': 3 groups validate" in said
    split = json.loads((run / SPLIT_FILE).read_text())
    assert len(split["valid_groups"]) == 3 and split["settings"]["group"] == {"column": "site"}
    valid_sites = set(sites()[split["valid_rows"]])
    assert valid_sites == set(split["valid_groups"])
    assert not valid_sites & set(np.delete(sites(), split["valid_rows"]))
    # Export refits the plugins on the recorded split: a changed training file is refused, not silently re-split.
    frame = pd.read_csv(grouped_csv)
    frame.iloc[:100].to_csv(grouped_csv, index=False)
    result = cli("export", run, "--trial", 0, "--out", tmp_path / "exported")
    assert_user_error(result, "the training file changed since this run split it", "split.json")
    frame.to_csv(grouped_csv, index=False)
    result = cli("export", run, "--trial", 0, "--out", tmp_path / "exported")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "exported" / "automtl.json").read_text())
    assert "validation split" in manifest["data"]["valid"]
