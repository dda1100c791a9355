"""One live search per run folder (issue 31: two searches started at once on one --out both ran the same start
point and both exported best/). The second is refused with the first's PID and host; a lock whose holder died
is stale; a Keras Tuner worker joins its chief's folder instead."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import assert_user_error

from automtl.errors import ConfigError

from conftest import LEAN_FLAGS

#: A process that holds a run folder's lock until it is killed.
HOLDER = ("import sys, time\n"
          "from automtl.rundir.lock import hold\n"
          "hold(sys.argv[1])\n"
          "print('held', flush=True)\n"
          "time.sleep(600)\n")


@pytest.fixture
def holder(tmp_path):
    """Start a process holding ``tmp_path/run``; yields ``(run folder, process)`` and kills it afterwards."""
    run = tmp_path / "run"
    run.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield run, proc
    proc.kill()
    proc.wait()


def test_a_held_folder_is_refused_naming_pid_and_host(holder):
    from automtl.rundir.lock import check_free, hold

    run, proc = holder
    for attempt in (check_free, hold):
        with pytest.raises(ConfigError) as caught:
            attempt(run)
        message = str(caught.value)
        assert f"PID {proc.pid} on host {socket.gethostname()}" in message and "in use by another search" in message
        assert "--out" in message and "--workers" in message


def test_a_lock_whose_holder_died_is_stale(holder):
    from automtl.rundir.lock import check_free, hold, release

    run, proc = holder
    proc.send_signal(signal.SIGKILL)  # no clean-up: the kernel drops its lock
    proc.wait()
    check_free(run)
    hold(run)
    try:
        assert f'"pid": {os.getpid()}' in (run / ".automtl-search.lock").read_text()
    finally:
        release(run)
    assert (run / ".automtl-search.lock").read_text() == ""  # released: nothing claims the folder


def test_the_holder_may_resume_its_own_folder(tmp_path):
    from automtl.rundir.lock import check_free, hold, release

    hold(tmp_path)
    try:
        hold(tmp_path)  # a second search in the same process (run_search twice) is not refused by itself
        check_free(tmp_path)
    finally:
        release(tmp_path)


def test_a_search_on_a_folder_in_use_is_refused_before_tensorflow(holder, cli, write_experiment, monkeypatch):
    from automtl.rundir.folder import record_owner

    run, proc = holder
    exp_path = write_experiment(search={"trials": 1, "epochs": 1, "out": str(run)})
    from automtl.config import load_experiment

    record_owner(load_experiment(exp_path), run)  # a run folder this search would resume

    def no_tf(*args, **kwargs):
        raise AssertionError("TensorFlow would load")

    monkeypatch.setattr("automtl.tfimport.import_tensorflow_quietly", no_tf)
    assert_user_error(cli("search", "--config", exp_path), f"PID {proc.pid}", socket.gethostname())


def test_a_keras_tuner_worker_joins_instead(holder, monkeypatch):
    from automtl import backends

    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    assert backends.spec("keras-tuner").joins_running_search()
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert not backends.spec("keras-tuner").joins_running_search()
    assert not backends.spec("optuna").joins_running_search()


@pytest.mark.slow
def test_two_searches_started_at_once_on_one_folder(tmp_path, write_experiment):
    """The issue's finding: both ran and both exported best/. Now one runs and the other is refused."""
    out = tmp_path / "shared"
    exp_path = write_experiment(search={"trials": 2, "epochs": 2, "trials_per_process": 0, "out": str(out)})
    cmd = [sys.executable, "-m", "automtl", "search", "--config", str(exp_path), "--no-report", "--quiet", *LEAN_FLAGS]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=600), p.stdout.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(text for code, text in results if code == 2)
    winner = next(p for p, (code, _) in zip(procs, results) if code == 0)
    assert "in use by another search" in refused and f"PID {winner.pid}" in refused, refused
    assert "Traceback" not in refused
    assert Path(out / "best" / "automtl.json").is_file()
