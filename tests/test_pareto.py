"""``--objective pareto``: one objective per task, the front marked, any front trial exported and served."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from conftest import TINY_SPACE, experiment_dict, make_table


def invoke(*args: Any) -> Any:
    from automtl.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def pareto_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pareto")
    make_table().to_csv(tmp / "data.csv", index=False)
    (tmp / "space.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    exp = experiment_dict(tmp / "data.csv", tmp / "space.yaml", out=str(tmp / "run"), trials=6, epochs=3)
    (tmp / "experiment.yaml").write_text(yaml.safe_dump(exp))
    result = invoke("search", "--config", tmp / "experiment.yaml", "--objective", "pareto")
    assert result.exit_code == 0, result.output
    assert "Pareto front: trials" in result.output
    return tmp / "run"


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "trials.csv").open() as fh:
        return list(csv.DictReader(fh))


def dominated(a: tuple[float, ...], others: list[tuple[float, ...]]) -> bool:
    return any(all(o >= x for o, x in zip(other, a)) and other != a for other in others)


@pytest.mark.e2e
def test_trials_csv_marks_exactly_the_non_dominated_trials(pareto_run):
    table = [r for r in rows(pareto_run) if r["state"] == "complete"]
    assert len(table) == 6 and "pareto" in table[0]
    points = {int(r["number"]): (float(r["score.price"]), float(r["score.kind"])) for r in table}
    front = {int(r["number"]) for r in table if r["pareto"] == "yes"}
    expected = {n for n, p in points.items() if not dominated(p, list(points.values()))}
    assert front == expected and len(front) >= 2


@pytest.mark.e2e
def test_study_has_one_maximised_objective_per_task(pareto_run):
    import optuna

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{pareto_run / 'study.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MAXIMIZE"]
    assert study.metric_names == ["price", "kind"]
    doc = json.loads((pareto_run / "trials.json").read_text())
    assert doc["objective"] == "pareto"
    best = json.loads((pareto_run / "best" / "automtl.json").read_text())
    front = {t["number"] for t in doc["trials"] if t["pareto"]}
    assert best["trial"]["number"] in front  # the best mean score is itself on the front


@pytest.mark.e2e
def test_two_front_trials_export_and_serve_with_plain_tensorflow(pareto_run, tmp_path):
    front = sorted(int(r["number"]) for r in rows(pareto_run) if r["pareto"] == "yes")[:2]
    for n in front:
        result = invoke("export", pareto_run, "--trial", n, "--out", tmp_path / f"t{n}")
        assert result.exit_code == 0, result.output
        assert json.loads((tmp_path / f"t{n}" / "automtl.json").read_text())["trial"]["number"] == n
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        out = {{}}
        for n in {front}:
            serve = tf.saved_model.load(r"{tmp_path}/t%d/saved_model" % n).signatures["serving_default"]
            res = serve(features=tf.constant([[0.1, -0.2, 0.3, 0.5]] * 2), city=tf.constant(["north", "east"]))
            out[n] = {{"price": res["price.value"].numpy().tolist(), "kind": [b.decode() for b in res["kind.label"].numpy()]}}
        assert not any(m.startswith("automtl") for m in sys.modules)
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    a, b = (served[str(n)] for n in front)
    assert all(k in ("basic", "premium") for k in a["kind"] + b["kind"])
    assert a["price"] != b["price"]  # two different models, not the same one twice


@pytest.mark.e2e
def test_report_draws_the_front(pareto_run):
    html = (pareto_run / "report.html").read_text()
    assert "Pareto front (task scores, higher is better)" in html
    assert "&#9733;" in html  # front trials starred in the leaderboard


def test_pareto_with_keras_tuner_is_a_clear_error(write_experiment, cli):
    exp = write_experiment(search={"backend": "keras-tuner", "objective": "pareto", "trials": 2, "epochs": 2})
    result = cli("search", "--config", exp)
    assert result.exit_code == 2
    assert "pareto" in result.output and "multi-objective" in result.output
    assert "Traceback" not in result.output


def test_backend_factory_refuses_pareto_without_multi_objective_support(tmp_path):
    from automtl import backends
    from automtl.config import SearchConfig
    from automtl.errors import ConfigError

    settings = SearchConfig.model_construct(**{**SearchConfig().model_dump(), "backend": "keras-tuner", "algorithm": "bayesian",
                                               "objective": "pareto"})
    with pytest.raises(ConfigError, match="no true multi-objective search"):
        backends.create(settings, tmp_path, None, "s", objectives=["a", "b"])  # type: ignore[arg-type]


def test_pareto_needs_two_tasks(write_experiment, cli):
    exp = write_experiment(tasks=[{"name": "price", "type": "regression", "target": "price"}])
    result = cli("search", "--config", exp, "--objective", "pareto")
    assert result.exit_code == 2 and "at least two tasks" in result.output


@pytest.mark.e2e
def test_a_pareto_study_is_not_resumed_as_mean(pareto_run):
    result = invoke("search", "--config", pareto_run.parent / "experiment.yaml", "--objective", "mean")
    assert result.exit_code == 2
    assert "holds the optuna study 'tiny' (objective pareto)" in result.output
    assert "asks for objective mean" in result.output and "--out" in result.output


@pytest.mark.e2e
def test_nsga2_runs_a_pareto_search(pareto_run, tmp_path):
    result = invoke("search", "--config", pareto_run.parent / "experiment.yaml", "--objective", "pareto",
                    "--algorithm", "nsga2", "--trials", "2", "--epochs", "2", "--out", tmp_path / "nsga", "--no-report")
    assert result.exit_code == 0, result.output
    marks = [r["pareto"] for r in rows(tmp_path / "nsga")]
    assert len(marks) == 2 and "yes" in marks


@pytest.mark.e2e
def test_latency_is_one_more_objective_measured_per_trial(tmp_path, write_experiment):
    import optuna

    result = invoke("search", "--config", write_experiment(), "--objective", "pareto", "--latency-objective",
                    "--trials", "3", "--no-report")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run / 'study.db'}")
    assert study.metric_names == ["price", "kind", "latency"] and len(study.directions) == 3
    table = [r for r in rows(run) if r["state"] == "complete"]
    for r in table:
        assert float(r["latency_ms"]) > 0 and float(r["score.latency"]) == -float(r["latency_ms"])
    points = {int(r["number"]): (float(r["score.price"]), float(r["score.kind"]), float(r["score.latency"]))
              for r in table}
    front = {int(r["number"]) for r in table if r["pareto"] == "yes"}
    assert front == {n for n, p in points.items() if not dominated(p, list(points.values()))}


def test_latency_objective_needs_pareto(write_experiment):
    from helpers import assert_user_error

    assert_user_error(invoke("search", "--config", write_experiment(), "--latency-objective"),
                      "latency_objective needs search.objective 'pareto'")
