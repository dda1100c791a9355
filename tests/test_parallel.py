"""--workers N: search workers sharing one journal study, exactly --trials trials, one export."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import LEAN_ENDING, LEAN_FLAGS


def rows(path):
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_worker_environment_pins_gpus_or_splits_cores():
    from automtl.run.parallel import worker_environment

    pinned = [worker_environment(i, 3, ["2", "5"], base={})["CUDA_VISIBLE_DEVICES"] for i in range(3)]
    assert pinned == ["2", "5", "2"]
    cpu = worker_environment(1, 2, [], base={})
    assert "CUDA_VISIBLE_DEVICES" not in cpu and int(cpu["TF_NUM_INTRAOP_THREADS"]) >= 1
    assert cpu["AUTOMTL_WORKER"] == "1"


def test_workers_auto_without_gpus_is_one_process():
    from automtl.run.parallel import resolve_workers

    assert resolve_workers("auto", "auto") == (1, [])  # the tests hide the GPUs
    assert resolve_workers(3, "cpu") == (3, [])


def test_bad_workers_values_are_refused(cli, write_experiment):
    result = cli("search", "--config", write_experiment(), "--workers", "0")
    assert result.exit_code == 2 and "expected a positive number or 'auto'" in result.output
    result = cli("search", "--config", write_experiment(), "--workers", "2", "--backend", "keras-tuner")
    assert result.exit_code == 2 and "cannot share one this way" in result.output and "chief and workers" in result.output


@pytest.mark.e2e
def test_two_workers_share_a_journal_study_and_finish_exactly_the_budget(cli, write_experiment, tmp_path):
    import optuna

    from automtl.backends.optuna.storage import OWNER_ATTR, open_storage

    exp = write_experiment(search={**LEAN_ENDING, "trials": 5, "epochs": 2, "seed": 0, "trials_per_process": 10,
                                   "out": str(tmp_path / "run")})
    result = cli("search", "--config", exp, "--workers", "2", "--no-report")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    assert (run / "study.journal").exists() and not (run / "study.db").exists()
    table = rows(run / "trials.csv")
    assert sorted(int(r["number"]) for r in table) == [0, 1, 2, 3, 4]  # exactly --trials, no number twice
    assert {r["state"] for r in table} == {"complete"} and {r["device"] for r in table} == {"cpu"}
    params = [tuple(sorted((k, v) for k, v in r.items() if k.startswith("param."))) for r in table]
    assert len(set(params)) == 5  # the workers drew different values
    study = optuna.load_study(study_name="tiny", storage=open_storage(str(run / "study.journal")))
    owners = {t.user_attrs[OWNER_ATTR] for t in study.trials}
    assert len(owners) == 2  # both workers ran trials
    assert "w0 " in result.output and "w1 " in result.output  # their lines, relayed
    manifest = json.loads((run / "best" / "automtl.json").read_text())
    best = max(table, key=lambda r: float(r["score"]))
    assert manifest["trial"]["number"] == int(best["number"])  # exported once, by the launching process
    # Rerunning the finished study starts no trial (the journal is found again without --workers).
    again = cli("search", "--config", exp, "--no-report")
    assert again.exit_code == 0, again.output
    assert len(rows(run / "trials.csv")) == 5


@pytest.mark.slow
def test_two_workers_finish_the_digits_demo(cli, tmp_path):
    """The issue's 'done means': two workers on one machine finish a demo search with journal storage."""
    result = cli("search", "--demo", "digits", "--out", tmp_path / "digits", "--workers", "2", "--trials", "4",
                 "--epochs", "3", "--no-report", *LEAN_FLAGS)
    assert result.exit_code == 0, result.output
    table = rows(tmp_path / "digits" / "trials.csv")
    assert len(table) == 4 and len({r["number"] for r in table}) == 4
    assert (tmp_path / "digits" / "study.journal").exists()
    assert (tmp_path / "digits" / "best" / "saved_model" / "saved_model.pb").exists()
