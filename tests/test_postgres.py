"""Two separate `automtl search` processes share one study in a real PostgreSQL server.

A throwaway PostgreSQL 15 cluster (Debian's binaries) runs as the ``postgres``
user on a free port of 127.0.0.1 with password authentication, and is
stopped afterwards. Skipped, saying why, where the binaries are missing.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pgcluster import PASSWORD

pytestmark = pytest.mark.slow


def rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_two_processes_share_one_study_in_postgresql(postgres_url, tmp_path, table_csv, tiny_space):
    import optuna

    from conftest import experiment_dict

    exp = experiment_dict(table_csv, tiny_space, trials=6, epochs=3, trials_per_process=10,
                          pruner="none")  # every trial runs to the end (a sixth may be pruned otherwise)
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(exp))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = [
        # two "machines": the same command, each with its own run folder, one --storage and --study
        subprocess.Popen([sys.executable, "-m", "automtl.cli", "search", "--config", str(config), "--no-report",
                          "--storage", postgres_url, "--study", "shared", "--out", str(tmp_path / name)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for name in ("run_a", "run_b")
    ]
    outputs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=300)
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out
        assert PASSWORD not in out  # the storage URL is printed, if at all, without its password
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(6))  # exactly --trials, no number twice
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    params = {json.dumps(t.user_attrs["params"], sort_keys=True) for t in trials}
    assert len(params) == 6  # no trial duplicated
    owners = {t.user_attrs["worker"] for t in trials}
    assert len(owners) == 2  # both processes ran trials
    for name in ("run_a", "run_b"):
        table = rows(tmp_path / name / "trials.csv")  # each sees the whole study
        assert sorted(int(r["number"]) for r in table) == list(range(6))
        assert PASSWORD not in (tmp_path / name / "experiment.resolved.yaml").read_text()
    # The best trial is exported by the process that trained it.
    best = max(trials, key=lambda t: t.value)
    exported = [json.loads(p.read_text())["trial"]["number"] for p in tmp_path.glob("run_*/best/automtl.json")]
    assert best.number in exported
