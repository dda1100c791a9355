"""Two separate `automtl search` processes share one study in a real PostgreSQL server.

A throwaway PostgreSQL 15 cluster (Debian's binaries) runs as the ``postgres``
user on a free port of 127.0.0.1 with password authentication, and is
stopped afterwards. Skipped, saying why, where the binaries are missing.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

def _server_bin() -> Path:
    """Debian's PostgreSQL server binaries (the newest installed version), or AUTOMTL_PG_BIN."""
    if os.environ.get("AUTOMTL_PG_BIN"):
        return Path(os.environ["AUTOMTL_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


BIN = _server_bin()
USER, PASSWORD, DATABASE = "automtl", "s3cret-pw", "studies"

pytestmark = pytest.mark.slow


def _as_postgres(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    if not (BIN / "initdb").exists() or not (BIN / "pg_ctl").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {BIN} (Debian: apt-get install postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as the postgres user")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver psycopg (a dependency of automtl) is missing")
    root = Path(tempfile.mkdtemp(prefix="automtl-pg-"))  # under /tmp, reachable by the postgres user
    data = root / "data"
    (root / "pw").write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(root / "pw", "postgres", "postgres")
    port = _free_port()
    init = _as_postgres([str(BIN / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(root / "pw"),
                         "--auth", "scram-sha-256", "-E", "UTF8", "--no-sync"])
    assert init.returncode == 0, init.stdout + init.stderr
    start = _as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
                          "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
    try:
        assert start.returncode == 0, start.stdout + start.stderr + (root / "server.log").read_text()
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        yield f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"
    finally:
        _as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


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
