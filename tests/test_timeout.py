"""``--timeout`` is the search's wall time: the running trial stops at its next epoch and keeps its best epoch."""

from __future__ import annotations

import time

import pytest
from rich.console import Console

from automtl.config import load_experiment
from automtl.errors import TrialFailed
from conftest import make_table
from helpers import prepared, split


def _trainer():
    from automtl.core.trial_params import TrialParams
    from automtl.model.assemble import build_model
    from automtl.training.trainer import Trainer
    from automtl_classification import ClassificationTask
    from automtl_tabular import TabularInput

    enc = TabularInput("f", {"numeric": ["x*"]})
    task = ClassificationTask("kind", {"target": "kind"})
    train, valid = prepared([enc], [task], *split(make_table(200)))
    params = TrialParams({"trunk.depth": 1, "trunk.units": 8, "batch_size": 32})
    return Trainer(build_model([enc], [task], params), [task], params, train, valid, {"kind": 1.0}, encoders=[enc])


@pytest.mark.e2e
def test_trainer_stops_at_the_first_epoch_end_past_the_deadline(monkeypatch):
    from automtl.training import trainer as trainer_module

    trainer = _trainer()
    clock = {"now": 1000.0}  # a wall clock the test moves: the deadline passes during epoch 2
    monkeypatch.setattr(trainer_module.time, "time", lambda: clock["now"])

    def slow_second_epoch(result):
        if result.epoch == 2:
            clock["now"] = 1061.0

    fit = trainer.fit(1000, patience=None, report=slow_second_epoch, deadline=1060.0)
    assert len(fit.history) == 2
    assert 1 <= fit.best_epoch <= 2
    assert fit.stopped == "the search's time budget ran out after epoch 2"


def test_a_trial_starting_after_the_deadline_fails_with_the_reason():
    with pytest.raises(TrialFailed, match="time budget ran out before this trial finished an epoch"):
        _trainer().fit(5, deadline=time.time() - 1)


@pytest.mark.e2e
@pytest.mark.parametrize("backend, per_process", [("optuna", 0), ("optuna", 1), ("keras-tuner", 0)])
def test_search_ends_at_its_deadline_with_an_export(write_experiment, monkeypatch, backend, per_process):
    """The deadline reaches the trial in this process or in its trial process, with either backend."""
    from automtl.run import phases
    from automtl.run import search as search_module

    exp = load_experiment(write_experiment(), {"backend": backend, "epochs": 100_000, "patience": 100_000,
                                               "trials": 5, "trials_per_process": per_process})
    search = phases.prepare_search(search_module.check_files(exp), Console(quiet=True), quiet=True)
    real = phases.make_runner

    def started_then_timed(*args, **kwargs):  # the budget starts once the trial process is up (a busy machine)
        runner = real(*args, **kwargs)
        search.deadline = runner.deadline = time.time() + 15  # a busy CI machine builds slowly
        return runner

    monkeypatch.setattr(phases, "make_runner", started_then_timed)
    phases.run_trials(search)
    # One tiny epoch past the deadline, then the trial's save, the study write and the trial process's exit
    # (generous: CI machines are busy); without the deadline, 100,000 epochs would take hours.
    assert time.time() - search.deadline < 60
    summary = search_module.finish(search, False, None, report=False)
    records = summary.records
    assert records[0].state == "complete", records
    assert "time budget ran out after epoch" in records[0].reason
    # A trial the backend started just as the time ran out ends at once, failed with the reason.
    assert all(r.state == "fail" and "before this trial finished an epoch" in r.reason for r in records[1:]), records
    assert records[0].best_epoch is not None and summary.export_dir is not None
    assert (summary.export_dir / "saved_model" / "saved_model.pb").exists()
    # No refit after the deadline (it would train the best trial's epochs once more): best/ is the trial's model.
    assert not (summary.export_dir.parent / "trials" / f"{records[0].number:05d}" / "refit.keras").exists()
