"""Searches that survive faults: failure streaks, SIGKILL, Ctrl-C (SIGINT), dead trials retried."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from automtl.core.trial import TrialRecord
from automtl.errors import SearchStopped
from automtl.run.faults import FailureStreak


def rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def record(state: str, reason: str = "") -> TrialRecord:
    return TrialRecord(0, state, 0.5 if state == "complete" else None, {}, {}, 1.0, reason=reason)


def test_failure_streak_counts_only_failures_in_a_row():
    streak = FailureStreak(limit=3)
    for state in ("fail", "fail", "complete", "fail", "pruned", "fail", "fail"):
        streak.add(record(state))
    with pytest.raises(SearchStopped, match=r"3 trials failed in a row.*out of memory"):
        streak.add(record("fail", "out of memory"))


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["optuna", "keras-tuner"])
def test_ten_failures_in_a_row_stop_the_search(cli, write_experiment, tmp_path, monkeypatch, backend):
    from automtl.errors import TrialFailed
    from automtl.training import runner as runner_module

    def always_fails(self, handle):
        raise TrialFailed("out of memory: simulated")

    monkeypatch.setattr(runner_module.TrialRunner, "__call__", always_fails)
    exp = write_experiment(search={"trials": 30, "epochs": 2, "trials_per_process": 0, "out": str(tmp_path / "run"),
                                   "backend": backend, "algorithm": "random"})
    result = cli("search", "--config", exp, "--no-report")
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "10 trials failed in a row, so the search stopped" in text and "out of memory: simulated" in text
    table = rows(tmp_path / "run" / "trials.csv")
    assert len(table) == 10 and {r["state"] for r in table} == {"fail"}
    assert all(r["reason"] == "out of memory: simulated" for r in table)


# -- real processes: SIGKILL and SIGINT ------------------------------------------------------------
def _experiment(tmp_path: Path, table_csv: Path, tiny_space: Path, **search) -> Path:
    from conftest import experiment_dict

    exp = experiment_dict(table_csv, tiny_space, out=str(tmp_path / "run"), **search)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def _start(config: Path, *extra: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "automtl.cli", "search", "--config", str(config), "--no-report", *extra],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=config.parent)


def _wait_for_running_trial(run_dir: Path, proc: subprocess.Popen, after: int = 1, timeout: float = 120) -> int:
    """Wait until ``after`` trials completed and the next one is training; returns its number."""
    import optuna
    from optuna.trial import TrialState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the search ended before it could be stopped"
        if (run_dir / "study.db").exists() and (run_dir / "trials.csv").exists():
            study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run_dir / 'study.db'}")
            done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if len(done) >= after and running and "params" in running[0].user_attrs:
                time.sleep(2.0)  # well into its epochs
                return running[0].number
        time.sleep(0.3)
    raise AssertionError("no trial started in time")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


SEARCH = {"trials": 3, "epochs": 5, "patience": None, "trials_per_process": 5}
#: The run that gets stopped: long trials, so the signal lands mid-trial.
LONG = ("--epochs", "3000")


def _first_trial(config: Path) -> None:
    """One quick finished trial, so there is something to keep (and a best to export)."""
    done = subprocess.run([sys.executable, "-m", "automtl.cli", "search", "--config", str(config), "--no-report",
                           "--trials", "1", "-q"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def _rerun(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "automtl.cli", "search", "--config", str(config), "--no-report"],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_ctrl_c_then_a_kill_mid_trial_keep_what_finished_and_a_rerun_completes(tmp_path, table_csv, tiny_space):
    """One run folder through both faults a user meets (one story, so the slow searches run once):
    Ctrl-C records the running trial as interrupted and exports the best so far; a SIGKILL leaves its
    trial running in the study, which the next run fails at once and retries with the same parameters."""
    config = _experiment(tmp_path, table_csv, tiny_space, **SEARCH)
    run_dir = tmp_path / "run"
    _first_trial(config)
    # Ctrl-C (SIGINT) mid-trial
    proc = _start(config, *LONG, log=tmp_path / "first.log")
    try:
        running = _wait_for_running_trial(run_dir, proc)
        trial_workers = [p for p in _children(proc.pid)
                         if "multiprocessing.spawn" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "first.log").read_text()
    assert code == 130, log
    assert "interrupted: keeping finished trials and exporting the best so far" in log
    assert "Traceback" not in log
    table = {r["number"]: r for r in rows(run_dir / "trials.csv")}
    assert table[str(running)]["state"] == "fail" and table[str(running)]["reason"] == "interrupted (Ctrl-C)"
    assert (run_dir / "best" / "saved_model").exists()  # the best so far
    assert trial_workers and not any(_alive(p) for p in trial_workers)  # the trial's process was stopped
    # SIGKILL mid-trial: no clean-up at all
    proc = _start(config, *LONG, log=tmp_path / "second.log")
    try:
        killed = _wait_for_running_trial(run_dir, proc)
        before = {r["number"]: r for r in rows(run_dir / "trials.csv")}
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert sorted(r["state"] for r in before.values()) == ["complete", "fail"]
    # The rerun: same command (with short trials), same study. The dead process's trial is failed at once and retried.
    rerun = _rerun(config)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    table = {r["number"]: r for r in rows(run_dir / "trials.csv")}
    for number, row in before.items():  # what was finished is intact
        assert {k: table[number][k] for k in ("state", "score", "param.learning_rate")} == \
               {k: row[k] for k in ("state", "score", "param.learning_rate")}
    dead = table[str(killed)]
    assert dead["state"] == "fail" and "died" in dead["reason"] and "retried" in dead["reason"]
    retries = [r for r in table.values() if r["number"] != str(killed)
               and r["param.learning_rate"] == dead["param.learning_rate"]]
    assert retries and retries[0]["state"] == "complete"  # the killed trial ran again, same parameters
    # The study holds its three counted trials: neither the interrupted nor the killed trial counts.
    assert sum(r["state"] == "complete" for r in table.values()) == 3
    assert len(table) == 5
    assert (run_dir / "best" / "saved_model").exists()


def test_dead_owner_trial_is_failed_and_retried_and_the_budget_is_exact(tmp_path, tiny_space):
    """In-process: a running trial whose process is gone is retried with its parameters; a live one is waited for."""
    import optuna
    from optuna.trial import TrialState

    from automtl.backends.optuna.backend import OptunaBackend
    from automtl.backends.optuna.storage import OWNER_ATTR
    from automtl.config import SearchConfig
    from automtl.space import load_space

    space = load_space(tiny_space, ["price", "kind"])
    settings = SearchConfig(trials=3, storage=str(tmp_path / "s.journal"), heartbeat_interval=1)
    backend = OptunaBackend(settings, tmp_path, space, "study")
    study = backend.study
    for value in (0.1, 0.2):
        study.add_trial(optuna.create_trial(value=value, user_attrs={"params": {}}))
    # a trial "running" in another live process on this host (this one)
    trial = study.ask()
    trial.set_user_attr(OWNER_ATTR, f"{os.uname().nodename}:{os.getpid()}")
    trial.set_user_attr("params", {"learning_rate": 0.005})

    calls = []

    def objective(handle):
        calls.append(handle.number)
        from automtl.core.trial import TrialOutcome

        return TrialOutcome(0.9, {}, {}, 1, 1, "cpu")

    backend.optimize(objective, 3, timeout=1.5, on_trial=lambda r: None)
    assert calls == []  # the budget is full while that trial runs: nothing new starts
    assert len(study.get_trials()) == 3
    # its process dies (a pid that no longer exists)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    study._storage.set_trial_user_attr(trial._trial_id, OWNER_ATTR, f"{os.uname().nodename}:{dead.stdout.strip()}")
    backend.optimize(objective, 3, timeout=30, on_trial=lambda r: None)
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert calls == [3]
    assert backend.finished() == 3
    failed = backend.records()[2]
    assert "died" in failed.reason


def test_a_process_waiting_for_others_runs_the_retry_of_a_trial_whose_machine_went_silent(tmp_path, tiny_space):
    """The budget is full while another machine's trial runs; its heartbeats stop: the waiting process fails it
    and runs its retry (it must not keep waiting on the queued retry, which counts as claimed)."""
    import optuna

    from automtl.backends.optuna.backend import OptunaBackend
    from automtl.backends.optuna.storage import HEARTBEAT_ATTR, OWNER_ATTR
    from automtl.config import SearchConfig
    from automtl.space import load_space
    from automtl.core.trial import TrialOutcome

    space = load_space(tiny_space, ["price", "kind"])
    settings = SearchConfig(trials=3, storage=str(tmp_path / "s.journal"), heartbeat_interval=1, grace_period=2)
    backend = OptunaBackend(settings, tmp_path, space, "study")
    study = backend.study
    for value in (0.1, 0.2):
        study.add_trial(optuna.create_trial(value=value, user_attrs={"params": {}}))
    remote = study.ask()
    remote.suggest_float("learning_rate", 3e-3, 1e-2, log=True)
    remote.set_user_attr(OWNER_ATTR, "another-machine:123")  # not this host: only its heartbeats tell
    study._storage.set_trial_system_attr(remote._trial_id, HEARTBEAT_ATTR, time.time())
    calls = []

    def objective(handle):
        calls.append(handle.number)
        return TrialOutcome(0.9, {}, {}, 1, 1, "cpu")

    started = time.monotonic()
    backend.optimize(objective, 3, timeout=20, on_trial=lambda r: None)
    assert calls == [3] and backend.finished() == 3  # the retry of trial 2 ran here
    assert time.monotonic() - started < 15
    assert study.get_trials()[3].params["learning_rate"] == study.get_trials()[2].params["learning_rate"]


def test_journal_heartbeat_marks_a_silent_trial_failed_and_queues_a_retry(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from automtl.backends.optuna.storage import HEARTBEAT_ATTR, open_storage

    storage = open_storage(str(tmp_path / "s.journal"), heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, time.time() - 10)  # silent for 10 s
    fresh = study.ask()
    storage.record_heartbeat(fresh._trial_id)
    optuna.storages.fail_stale_trials(study)
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    retry = study.get_trials()[2]
    assert retry.params == study.get_trials()[0].params
    # The retry inherits the dead trial's stale heartbeat; once a worker starts it, it is not stale.
    assert study.ask().number == 2
    optuna.storages.fail_stale_trials(study)
    assert study.get_trials()[2].state == TrialState.RUNNING
