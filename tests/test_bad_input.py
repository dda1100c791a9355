"""Each kind of bad input: exit code 2, a message naming the file/key/column, no traceback."""

from __future__ import annotations

import yaml

import pytest
from helpers import assert_user_error


def test_missing_experiment_file(cli, tmp_path):
    assert_user_error(cli("search", "--config", tmp_path / "missing.yaml"), "not found", "missing.yaml")


def test_malformed_yaml(cli, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: [unclosed\ntasks: 3\n")
    assert_user_error(cli("search", "--config", path), "bad.yaml", "malformed YAML", "line")


def test_missing_required_key(cli, tmp_path, write_experiment):
    path = write_experiment()
    raw = yaml.safe_load(path.read_text())
    del raw["tasks"]
    path.write_text(yaml.safe_dump(raw))
    assert_user_error(cli("search", "--config", path), "experiment.yaml", "tasks", "Field required")


def test_unknown_task_type_lists_known(cli, write_experiment):
    path = write_experiment(tasks=[{"name": "t", "type": "segmentation", "target": "price"}])
    assert_user_error(cli("search", "--config", path), "unknown task type 'segmentation'", "regression", "classification")


def test_unknown_input_type_lists_known(cli, write_experiment):
    path = write_experiment(inputs=[{"name": "f", "type": "audio"}])
    assert_user_error(cli("search", "--config", path), "unknown input type 'audio'", "tabular")


def test_bad_plugin_option_names_task_and_option(cli, write_experiment):
    path = write_experiment(tasks=[{"name": "price", "type": "regression", "target": "price", "colour": "red"}])
    assert_user_error(cli("search", "--config", path), "task 'price'", "colour")


def test_missing_column(cli, write_experiment, table_csv):
    path = write_experiment(tasks=[{"name": "price", "type": "regression", "target": "cost"}])
    assert_user_error(cli("search", "--config", path), "data.csv", "no column 'cost'", "task 'price'")


def test_missing_input_column(cli, write_experiment):
    path = write_experiment(inputs=[{"name": "f", "type": "tabular", "numeric": ["x0", "height"]}])
    assert_user_error(cli("search", "--config", path), "no column 'height'", "input 'f'")


def test_non_numeric_regression_target(cli, write_experiment):
    path = write_experiment(tasks=[{"name": "price", "type": "regression", "target": "city"}])
    assert_user_error(cli("search", "--config", path), "column 'city'", "must be numeric", "holds '")


def test_empty_dataset(cli, write_experiment, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("x0,x1,x2,x3,city,price,kind\n")
    path = write_experiment(data={"train": str(empty), "valid_fraction": 0.2})
    assert_user_error(cli("search", "--config", path), "empty.csv", "no rows")


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1])
def test_validation_fraction_outside_unit_interval(cli, write_experiment, table_csv, fraction):
    path = write_experiment(data={"train": str(table_csv), "valid_fraction": fraction})
    assert_user_error(cli("search", "--config", path), "data.valid_fraction", "between 0 and 1")


def test_unknown_parameter_kind(cli, write_experiment, tmp_path):
    space = tmp_path / "bad_space.yaml"
    space.write_text("parameters:\n  trunk.depth: {integer: [1, 3]}\n")
    path = write_experiment(space=str(space))
    assert_user_error(cli("search", "--config", path), "bad_space.yaml", "trunk.depth", "unknown parameter kind 'integer'", "int, float, choice, fixed")


def test_empty_range(cli, write_experiment, tmp_path):
    space = tmp_path / "bad_space.yaml"
    space.write_text("parameters:\n  learning_rate: {float: [0.01, 0.001]}\n")
    path = write_experiment(space=str(space))
    assert_user_error(cli("search", "--config", path), "bad_space.yaml", "learning_rate", "empty range")


def test_missing_space_file(cli, write_experiment, tmp_path):
    path = write_experiment(space=str(tmp_path / "nospace.yaml"))
    assert_user_error(cli("search", "--config", path), "search space file not found", "nospace.yaml")


def test_unwritable_output_folder(cli, write_experiment, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    path = write_experiment()
    assert_user_error(cli("search", "--config", path, "--out", blocker / "run"), "output folder", "cannot be written")


def test_unsupported_data_format(cli, write_experiment, tmp_path):
    weird = tmp_path / "data.xlsx"
    weird.write_text("x")
    path = write_experiment(data={"train": str(weird), "valid_fraction": 0.2})
    assert_user_error(cli("search", "--config", path), "data.xlsx", "unsupported")


def test_unknown_algorithm_lists_choices(cli, write_experiment):
    assert_user_error(cli("search", "--config", write_experiment(), "--algorithm", "cmaes"), "cmaes", "tpe", "random")


def test_storage_password_is_not_printed(cli, write_experiment):
    result = cli("search", "--config", write_experiment(), "--storage", "postgresql://bob:s3cret@127.0.0.1:1/db")
    assert result.exit_code == 2
    assert "s3cret" not in result.output
    assert "cannot open study storage" in result.output
