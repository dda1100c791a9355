"""Trials in recycled trial processes: same results, bounded lifetime, crash isolation."""

from __future__ import annotations

import csv
import os
import signal

import pytest

from automtl.config import load_experiment

from conftest import LEAN_ENDING

#: every test here runs a search (or reads one that a module fixture ran): the e2e loop
pytestmark = pytest.mark.e2e


def rows(path):
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_worker_processes_are_recycled(write_experiment, tmp_path):
    from automtl.core.trial import TrialOutcome
    from automtl.run.trial_process import ProcessTrialRunner

    exp = load_experiment(write_experiment(), {"epochs": 2, "trials_per_process": 2})

    class Handle:
        def __init__(self, n):
            self.number, self.params, self.reports = n, {"strategy": "joint", "trunk.units": 16}, []

        def report(self, epoch, value):
            self.reports.append((epoch, value))

    runner = ProcessTrialRunner(exp, tmp_path / "run", trials_per_process=2)
    try:
        handles = [Handle(n) for n in range(3)]
        outcomes = [runner(h) for h in handles]
    finally:
        runner.close()
    assert all(isinstance(o, TrialOutcome) and 0 < o.score <= 1 for o in outcomes)
    assert [len(h.reports) for h in handles] == [2, 2, 2]  # every epoch reached the parent's backend
    assert len(runner.pids) == 2 and os.getpid() not in runner.pids  # a new process after two trials
    assert (tmp_path / "run" / "trials" / "00002" / "model.keras").exists()


def test_killed_worker_fails_its_trial_and_the_search_goes_on(cli, write_experiment, tmp_path, monkeypatch):
    from automtl.run import progress

    original = progress.SearchProgress.epoch
    killed = []

    def kill_during_first_trial(self, number, epoch, objective):
        original(self, number, epoch, objective)
        if number == 0 and not killed:
            import automtl.run.phases as search_module

            pid = search_module._last_runner.pids[-1]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    import automtl.run.phases as search_module

    real_make = search_module.make_runner

    def remember(*args, **kwargs):
        search_module._last_runner = real_make(*args, **kwargs)
        return search_module._last_runner

    monkeypatch.setattr(search_module, "make_runner", remember)
    monkeypatch.setattr(progress.SearchProgress, "epoch", kill_during_first_trial)
    exp = write_experiment(search={**LEAN_ENDING, "trials": 3, "epochs": 3, "seed": 0, "out": str(tmp_path / "run"),
                                   "trials_per_process": 5})
    result = cli("search", "--config", exp, "--no-report")
    assert killed
    table = rows(tmp_path / "run" / "trials.csv")
    assert [r["state"] for r in table] == ["fail", "complete", "complete"]
    assert "trial process died" in table[0]["reason"]
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "best" / "saved_model").exists()
