"""Studies behind Optuna's gRPC storage proxy (`automtl storage serve`, `--storage grpc://HOST:PORT`).

The end-to-end tests start a throwaway PostgreSQL server (see ``pgcluster.py``)
and the proxy in front of it, as a cluster would; skipped, saying why, where the
server binaries are missing.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pgcluster import PASSWORD, free_port


# -- addresses and errors (no server) -------------------------------------------------------------
def test_grpc_addresses_parse_and_bad_ones_name_the_value():
    from automtl.backends.optuna.location import grpc_address, is_grpc, redact, without_password
    from automtl.errors import ConfigError

    assert grpc_address("grpc://proxy:13001") == ("proxy", 13001)
    assert grpc_address("grpc://proxy.ns.svc") == ("proxy.ns.svc", 13000)  # Optuna's default port
    assert is_grpc("grpc://h:1") and not is_grpc("postgresql://h/db")
    assert redact("grpc://h:1") == without_password("grpc://h:1") == "grpc://h:1"
    for bad in ("grpc://", "grpc://h:port", "grpc://u:pw@h:1", "grpc://h:0"):
        with pytest.raises(ConfigError, match="grpc://HOST:PORT"):
            grpc_address(bad)


def test_search_refuses_a_proxy_that_does_not_answer_before_tensorflow(cli, write_experiment, monkeypatch):
    import automtl.backends.optuna.location as location

    monkeypatch.setattr(location, "CONNECT_TIMEOUT_S", 0.5)
    result = cli("search", "--config", write_experiment(), "--storage", f"grpc://127.0.0.1:{free_port()}")
    assert result.exit_code == 2
    assert "no storage proxy answered" in result.output and "automtl storage serve" in result.output


def test_serve_refuses_what_the_proxy_cannot_serve(cli, tmp_path):
    journal = cli("storage", "serve", "--storage", str(tmp_path / "s.journal"))
    assert journal.exit_code == 2 and "not a journal file" in journal.output
    proxy = cli("storage", "serve", "--storage", "grpc://other:13000")
    assert proxy.exit_code == 2 and "a proxy already" in proxy.output
    bad = cli("storage", "serve", "--storage", f"postgresql://u:{PASSWORD}@127.0.0.1:{free_port()}/db")
    assert bad.exit_code == 2 and "cannot open study storage" in bad.output and PASSWORD not in bad.output


# -- a real proxy in front of a real PostgreSQL ---------------------------------------------------
@pytest.fixture(scope="module")
def proxy(postgres_url, tmp_path_factory):
    """``automtl storage serve`` as its own process; the URL comes from the environment, as from a Secret."""
    port = free_port()
    log = tmp_path_factory.mktemp("proxy") / "proxy.log"
    env = dict(os.environ, AUTOMTL_STORAGE=postgres_url, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "automtl.cli", "storage", "serve", "--port", str(port)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    address = f"grpc://127.0.0.1:{port}"
    try:
        from automtl.backends.optuna.location import check_proxy

        check_proxy(address, timeout=60)
        yield address, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert PASSWORD not in log.read_text()


def rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_heartbeats_through_the_proxy_fail_a_silent_trial_and_queue_its_retry(proxy, postgres_url):
    import optuna
    from optuna.trial import TrialState

    from automtl.backends.optuna.storage import HEARTBEAT_ATTR, HeartbeatGrpcStorage, open_storage

    address, _ = proxy
    storage = open_storage(address, heartbeat_interval=1, grace_period=2)
    assert isinstance(storage, HeartbeatGrpcStorage)
    study = optuna.create_study(study_name="beats", storage=storage)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, time.time() - 10)  # silent for 10 s
    fresh = study.ask()
    storage.record_heartbeat(fresh._trial_id)
    optuna.storages.fail_stale_trials(study)
    # what the proxy wrote is in the database itself
    direct = optuna.load_study(study_name="beats", storage=postgres_url)
    assert [t.state for t in direct.get_trials()] == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    assert direct.get_trials()[2].params == direct.get_trials()[0].params  # the retry: same parameters
    assert direct.get_trials()[1].system_attrs[HEARTBEAT_ATTR] > time.time() - 60
    # The retry inherits the dead trial's stale heartbeat; once a worker starts it, it is not stale.
    assert study.ask().number == 2
    optuna.storages.fail_stale_trials(study)
    assert study.get_trials()[2].state == TrialState.RUNNING


@pytest.mark.slow
def test_two_searches_share_a_study_through_the_proxy_then_resume_and_export(proxy, postgres_url, tmp_path,
                                                                             table_csv, tiny_space):
    import optuna

    from conftest import experiment_dict

    address, proxy_log = proxy
    exp = experiment_dict(table_csv, tiny_space, trials=4, epochs=2, trials_per_process=10, pruner="none",
                          baselines="off", ensemble=0)
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(exp))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("AUTOMTL_STORAGE", None)

    def search(name: str, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "automtl.cli", "search", "--config", str(config), "--no-report",
                                 "--storage", address, "--study", "proxied", "--out", str(tmp_path / name), *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

    procs = [search("run_a"), search("run_b")]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=300)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out
    study = optuna.load_study(study_name="proxied", storage=postgres_url)  # the database, not the proxy
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(4))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({json.dumps(t.user_attrs["params"], sort_keys=True) for t in trials}) == 4  # none twice
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes ran trials
    assert all("automtl:heartbeat" in t.system_attrs for t in trials)  # each beat through the proxy
    # Resume: the same command with a larger budget adds trials to the same study.
    more = search("run_a", "--trials", "5")
    out = more.communicate(timeout=300)[0]
    assert more.returncode == 0, out
    table = rows(tmp_path / "run_a" / "trials.csv")
    assert sorted(int(r["number"]) for r in table) == list(range(5))
    # Export any trial this run folder trained (its model is here; the study is read through the proxy).
    mine = [t.number for t in optuna.load_study(study_name="proxied", storage=postgres_url).get_trials()
            if (tmp_path / "run_a" / "trials" / f"{t.number:05d}" / "model.keras").exists()]
    assert mine
    exported = subprocess.run([sys.executable, "-m", "automtl.cli", "export", str(tmp_path / "run_a"), "--trial",
                               str(mine[0]), "--out", str(tmp_path / "exported")], capture_output=True, text=True,
                              timeout=300, env=env)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert json.loads((tmp_path / "exported" / "automtl.json").read_text())["trial"]["number"] == mine[0]
    report = subprocess.run([sys.executable, "-m", "automtl.cli", "report", str(tmp_path / "run_a")],
                            capture_output=True, text=True, timeout=300, env=env)
    assert report.returncode == 0, report.stdout + report.stderr
    # The password is in no output and no file of either run folder.
    assert not any(PASSWORD in o for o in outputs + [out, exported.stdout, report.stdout, proxy_log.read_text()])
    for path in [*tmp_path.glob("run_*/**/*"), *(tmp_path / "exported").rglob("*")]:
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert PASSWORD.encode() not in path.read_bytes(), path
