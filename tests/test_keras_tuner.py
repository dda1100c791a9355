"""The Keras Tuner backend: space translation, records like Optuna's, resume, Hyperband, chief and workers."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import TINY_SPACE, REPO

kt = pytest.importorskip("keras_tuner")

from automtl.backends.keras_tuner.backend import OBJECTIVE, KerasTunerBackend  # noqa: E402
from automtl.backends.keras_tuner.space import params_of, to_hyperparameters  # noqa: E402
from automtl.config import SearchConfig  # noqa: E402
from automtl.core.trial import TrialOutcome  # noqa: E402
from automtl.errors import ConfigError, TrialFailed  # noqa: E402
from automtl.space import parse_space  # noqa: E402

TASKS = ["price", "kind"]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def space_of(raw: dict, tasks: list[str] = TASKS):
    return parse_space(raw, "space.yaml", tasks)


# -- the one translation ------------------------------------------------------------------

def test_translation_kinds_conditions_and_values_back():
    raw = {
        "parameters": {
            "trunk.depth": {"int": [1, 3]},
            "trunk.units": {"int": [16, 256], "log": True},
            "dropout": {"float": [0.0, 0.4], "step": 0.1},
            "strategy": {"choice": ["joint", "alternating"]},
            "batch_size": 32,
        },
        "per_task": {"loss_weight": {"float": [0.2, 5.0], "log": True, "when": {"strategy": "joint"}},
                     "task_prob": {"float": [0.5, 2.0], "when": {"strategy": "alternating"}}},
    }
    space = space_of(raw)
    hp = to_hyperparameters(space)
    by_name = {p.name: p for p in hp.space}
    assert isinstance(by_name["trunk.depth"], kt.engine.hyperparameters.Int)
    assert by_name["trunk.units"].sampling == "log"
    assert by_name["dropout"].step == 0.1
    assert isinstance(by_name["batch_size"], kt.engine.hyperparameters.Fixed)
    assert [(c.name, c.values) for c in by_name["loss_weight.price"].conditions] == [("strategy", ["joint"])]
    assert [(c.name, c.values) for c in by_name["task_prob.kind"].conditions] == [("strategy", ["alternating"])]

    # Values come back exactly as the Optuna backend gives them: active parameters only.
    hp.values["strategy"] = "alternating"
    hp.ensure_active_values()
    params = params_of(space, hp.values)
    assert params["strategy"] == "alternating" and params["batch_size"] == 32
    assert {"task_prob.price", "task_prob.kind"} <= set(params)
    assert not any(k.startswith("loss_weight") for k in params)


def test_nested_conditions_translate_and_boolean_choices_come_back_as_booleans():
    raw = {"parameters": {
        "sharing": {"choice": ["hard", "mmoe"]},
        "experts": {"int": [2, 4], "when": {"sharing": "mmoe"}},
        # two parents that nest: 'experts' itself only exists under sharing=mmoe
        "expert_units": {"int": [8, 32], "when": {"sharing": "mmoe", "experts": [3, 4]}},
        "flag": {"choice": [True, False]},
    }}
    space = parse_space(raw, "space.yaml", TASKS, {"flag"})
    hp = to_hyperparameters(space)
    units = next(p for p in hp.space if p.name == "expert_units")
    assert [c.name for c in units.conditions] == ["sharing", "experts"]
    hp.values.update({"sharing": "mmoe", "experts": 3})
    hp.ensure_active_values()
    params = params_of(space, hp.values)
    assert params["flag"] is True and "expert_units" in params
    hp.values["experts"] = 2
    assert "expert_units" not in params_of(space, hp.values)


@pytest.mark.parametrize("raw, extra, needle", [
    ({"parameters": {"trunk.units": {"choice": [16, 32.0]}}}, set(), "one type"),
    ({"parameters": {"custom.option": {"fixed": None}}}, {"custom.option"}, "Fixed value"),
    ({"parameters": {"strategy": {"choice": ["joint", "alternating"]}, "trunk.depth": {"int": [1, 3]},
                     "trunk.units": {"int": [8, 64], "when": {"strategy": "joint", "trunk.depth": [2, 3]}}}},
     set(), "several parents ('strategy', 'trunk.depth') that do not nest"),
    ({"parameters": {"tuner/epochs": {"int": [1, 3]}}}, {"tuner/epochs"}, "reserved"),
])
def test_what_keras_tuner_cannot_express_is_refused_with_the_reason(raw, extra, needle):
    space = parse_space(raw, "space.yaml", TASKS, extra)
    with pytest.raises(ConfigError) as err:
        to_hyperparameters(space)
    msg = str(err.value)
    assert msg.startswith("space.yaml: ") and "Keras Tuner cannot express" in msg and needle in msg


# -- the backend contract, with a stand-in trial runner ----------------------------------

def fake_runner(handle) -> TrialOutcome:
    """Fails every third trial; scores the others from their learning rate."""
    if handle.number % 3 == 1:
        raise TrialFailed(f"boom {handle.number}")
    lr = handle.params["learning_rate"]
    return TrialOutcome(score=lr * 100, metrics={"price.rmse": 1 / lr, "kind.accuracy": lr},
                        scores={"price": lr, "kind": 2 * lr}, best_epoch=2, epochs=3, device="cpu")


def settings(backend: str, algorithm: str, trials: int = 4, **kw) -> SearchConfig:
    return SearchConfig(backend=backend, algorithm=algorithm, trials=trials, epochs=3, **kw)


def test_records_match_the_optuna_backends(tmp_path):
    from automtl.backends.optuna.backend import OptunaBackend

    space = space_of(TINY_SPACE)
    (tmp_path / "o").mkdir()
    seen = {}
    for name, backend in [
        ("optuna", OptunaBackend(settings("optuna", "random"), tmp_path / "o", space, "s")),
        ("keras-tuner", KerasTunerBackend(settings("keras-tuner", "random"), tmp_path / "k", space, "s")),
    ]:
        live = []
        backend.optimize(fake_runner, 4, None, live.append)
        records = backend.records()
        assert [r.number for r in live] == [r.number for r in records] == [0, 1, 2, 3]
        seen[name] = records
        best = backend.best()
        assert best.score == max(r.score for r in records if r.ok)
    for o, k in zip(seen["optuna"], seen["keras-tuner"]):
        assert (o.state, o.reason) == (k.state, k.reason)
        assert set(o.metrics) == set(k.metrics) and set(o.scores) == set(k.scores)
        assert (o.best_epoch, o.device) == (k.best_epoch, k.device)
        assert k.duration_s is not None and k.duration_s >= 0
        assert set(k.params) <= {p.name for p in space.params}
    failed = seen["keras-tuner"][1]
    assert failed.state == "fail" and failed.reason == "boom 1" and failed.score is None
    done = seen["keras-tuner"][0]
    assert done.score == pytest.approx(done.params["learning_rate"] * 100)
    assert done.scores == {"price": pytest.approx(done.params["learning_rate"]),
                           "kind": pytest.approx(2 * done.params["learning_rate"])}
    # The oracle's objective: automtl's score, maximised, under a name no Keras metric has.
    trial = json.loads((tmp_path / "k" / "keras_tuner" / "s" / "trial_0" / "trial.json").read_text())
    assert trial["metrics"]["metrics"][OBJECTIVE]["direction"] == "max"


@pytest.mark.parametrize("algorithm", ["bayesian", "hyperband"])
def test_proposals_respect_conditions_past_the_random_start(tmp_path, algorithm):
    space = space_of(TINY_SPACE)
    backend = KerasTunerBackend(settings("keras-tuner", algorithm, trials=9), tmp_path, space, "s")
    backend.optimize(fake_runner, 9, None, lambda r: None)
    records = backend.records()
    assert len(records) == 9 and sum(r.ok for r in records) == 6  # the Gaussian process proposed the last ones
    for r in records:
        joint = r.params["strategy"] == "joint"
        assert ("loss_weight.price" in r.params) == joint and ("loss_weight.kind" in r.params) == joint
        assert set(r.params) == set(space.sample_with(lambda p: r.params[p.name]))


def test_unexpected_errors_stop_the_search(tmp_path):
    def broken(handle):
        raise ZeroDivisionError("a bug")

    backend = KerasTunerBackend(settings("keras-tuner", "random"), tmp_path, space_of(TINY_SPACE), "s")
    with pytest.raises(kt.errors.FatalError, match="ZeroDivisionError: a bug"):
        backend.optimize(broken, 4, None, lambda r: None)


def test_resume_keeps_trials_and_refuses_a_changed_space_or_algorithm(tmp_path):
    space = space_of(TINY_SPACE)
    first = KerasTunerBackend(settings("keras-tuner", "bayesian", trials=2), tmp_path, space, "s")
    first.optimize(fake_runner, 2, None, lambda r: None)
    before = first.records()

    again = KerasTunerBackend(settings("keras-tuner", "bayesian", trials=3), tmp_path, space, "s")
    assert [(r.number, r.state, r.params) for r in again.records()] == [(r.number, r.state, r.params) for r in before]
    again.optimize(fake_runner, 3, None, lambda r: None)
    assert [r.number for r in again.records()] == [0, 1, 2]

    changed = dict(TINY_SPACE, parameters={**TINY_SPACE["parameters"], "trunk.depth": {"int": [1, 4]}})
    with pytest.raises(ConfigError, match="another search space"):
        KerasTunerBackend(settings("keras-tuner", "bayesian"), tmp_path, space_of(changed), "s")
    with pytest.raises(ConfigError, match="started with --algorithm bayesian"):
        KerasTunerBackend(settings("keras-tuner", "random"), tmp_path, space, "s")


def test_timeout_stops_handing_out_trials(tmp_path):
    import time

    def slow(handle):
        time.sleep(0.3)
        return TrialOutcome(score=0.5, metrics={}, scores={}, best_epoch=1, epochs=1, device="cpu")

    backend = KerasTunerBackend(settings("keras-tuner", "random", trials=50), tmp_path, space_of(TINY_SPACE), "s")
    backend.optimize(slow, 50, 0.5, lambda r: None)
    assert 1 <= len(backend.records()) <= 3


def test_bad_distributed_environment_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "http")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    with pytest.raises(ConfigError, match="KERASTUNER_ORACLE_PORT"):
        KerasTunerBackend(settings("keras-tuner", "random"), tmp_path, space_of(TINY_SPACE), "s")


# -- through the CLI, with real training ---------------------------------------------------

SERVE = textwrap.dedent('''
    import sys
    import tensorflow as tf
    fn = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
    feed = {}
    for name, spec in fn.structured_input_signature[1].items():
        shape = [2] + [d or 1 for d in spec.shape[1:]]
        feed[name] = tf.fill(shape, "north") if spec.dtype == tf.string else tf.zeros(shape, spec.dtype)
    out = fn(**feed)
    assert out["price.value"].shape[0] == 2 and set(out["kind.label"].numpy().ravel()) <= {b"basic", b"premium"}
    assert not [m for m in sys.modules if m.startswith("automtl")]
    print("served", sorted(out))
''')


@pytest.mark.e2e
def test_same_space_file_under_both_backends_and_plain_tensorflow_serving(cli, write_experiment, tmp_path):
    exp = write_experiment()
    runs = {}
    for backend, algorithm in [("optuna", "tpe"), ("keras-tuner", "bayesian")]:
        out = tmp_path / backend
        result = cli("search", "--config", exp, "--backend", backend, "--algorithm", algorithm,
                     "--trials", "2", "--epochs", "2", "--out", out)
        assert result.exit_code == 0, result.output
        runs[backend] = read_rows(out / "trials.csv")
        manifest = json.loads((out / "best" / "automtl.json").read_text())
        best = max(runs[backend], key=lambda r: float(r["score"]))
        assert manifest["trial"]["number"] == int(best["number"])
        assert (out / "best" / "model.keras").exists()
    o, k = runs["optuna"], runs["keras-tuner"]
    assert [r["state"] for r in k] == ["complete", "complete"]
    fixed = [c for c in o[0] if not c.startswith("param.")]
    assert [c for c in k[0] if not c.startswith("param.")] == fixed
    names = {f"param.{n}" for n in ("trunk.depth", "trunk.units", "strategy", "learning_rate", "batch_size",
                                    "head.price.units", "head.kind.units")}
    assert names <= set(k[0]) and names <= set(o[0])
    assert all(k[0][c] != "" for c in ("score", "duration_s", "device", "best_epoch", "price.rmse", "kind.accuracy"))
    assert (tmp_path / "keras-tuner" / "keras_tuner" / "tiny" / "oracle.json").exists()

    served = subprocess.run([sys.executable, "-c", SERVE, str(tmp_path / "keras-tuner" / "best" / "saved_model")],
                            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert served.returncode == 0, served.stderr[-2000:]
    assert "served" in served.stdout


@pytest.mark.e2e
def test_rerun_resumes_the_tuner_project(cli, write_experiment, tmp_path):
    exp = write_experiment()
    args = ("search", "--config", exp, "--backend", "keras-tuner", "--algorithm", "random", "--epochs", "2")
    assert cli(*args, "--trials", "2").exit_code == 0
    first = read_rows(tmp_path / "run" / "trials.csv")
    result = cli(*args, "--trials", "3")
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output
    rows = read_rows(tmp_path / "run" / "trials.csv")
    assert len(rows) == 3 and rows[:2] == first
    assert cli(*args, "--trials", "3").exit_code == 0
    assert len(read_rows(tmp_path / "run" / "trials.csv")) == 3  # the project is full: nothing new


@pytest.mark.e2e
def test_hyperband_continues_trials_from_their_checkpoints(cli, write_experiment, tmp_path):
    # A learning rate too small to move the weights: a continued trial must start where its parent ended.
    space = dict(TINY_SPACE, parameters={**TINY_SPACE["parameters"], "learning_rate": {"float": [1e-10, 2e-10]}})
    (tmp_path / "frozen.yaml").write_text(yaml.safe_dump(space))
    exp = write_experiment(space=str(tmp_path / "frozen.yaml"))
    result = cli("search", "--config", exp, "--backend", "keras-tuner", "--algorithm", "hyperband",
                 "--trials", "4", "--epochs", "3")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    rows = {int(r["number"]): r for r in read_rows(run / "trials.csv")}
    assert sorted(rows) == [0, 1, 2, 3] and all(r["state"] == "complete" for r in rows.values())
    # epochs=3, factor 3: three 1-epoch trials, then the best of them continues to epoch 3
    hp = json.loads((run / "keras_tuner" / "tiny" / "trial_3" / "trial.json").read_text())["hyperparameters"]["values"]
    parent = int(hp["tuner/trial_id"])
    assert parent == max(range(3), key=lambda n: float(rows[n]["score"]))
    assert (hp["tuner/initial_epoch"], hp["tuner/epochs"]) == (1, 3)
    assert {k: v for k, v in rows[3].items() if k.startswith("param.")} == \
        {k: v for k, v in rows[parent].items() if k.startswith("param.")}
    history = json.loads((run / "trials" / "00003" / "history.json").read_text())
    assert len(history) == 2  # only the epochs Hyperband added
    assert history[0]["objective"] == pytest.approx(float(rows[parent]["score"]), abs=1e-4)
    assert not any(c.startswith("param.tuner") for c in rows[0])


def test_bad_algorithms_list_what_each_backend_has(cli, write_experiment):
    exp = write_experiment()
    kt_result = cli("search", "--config", exp, "--backend", "keras-tuner", "--algorithm", "tpe")
    assert kt_result.exit_code == 2
    assert "backend 'keras-tuner' has no algorithm 'tpe'; choose one of: random, bayesian, hyperband" in kt_result.output
    optuna_result = cli("search", "--config", exp, "--algorithm", "hyperband")
    assert optuna_result.exit_code == 2
    assert "backend 'optuna' has no algorithm 'hyperband'; choose one of: tpe" in optuna_result.output


def test_inexpressible_space_is_refused_before_any_trial(cli, write_experiment, tmp_path):
    space = dict(TINY_SPACE, parameters={**TINY_SPACE["parameters"], "learning_rate": {"choice": [0.001, 1]}})
    (tmp_path / "mixed.yaml").write_text(yaml.safe_dump(space))
    exp = write_experiment(space=str(tmp_path / "mixed.yaml"))
    result = cli("search", "--config", exp, "--backend", "keras-tuner")
    assert result.exit_code == 2
    assert "mixed.yaml: learning_rate: Keras Tuner cannot express this" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "trials").exists() and not (tmp_path / "run" / "trials.csv").exists()


# -- chief and workers ---------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_chief_and_two_workers_on_localhost(write_experiment, tmp_path):
    exp = write_experiment()
    port = str(free_port())
    base_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1",
                "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": port}
    cmd = [sys.executable, "-m", "automtl.cli", "search", "--config", str(exp), "--backend", "keras-tuner",
           "--algorithm", "random", "--trials", "4", "--epochs", "2"]
    procs = {tid: subprocess.Popen(cmd, env={**base_env, "KERASTUNER_TUNER_ID": tid}, cwd=REPO,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for tid in ("chief", "tuner0", "tuner1")}
    outputs = {}
    try:
        for tid, proc in procs.items():
            outputs[tid], _ = proc.communicate(timeout=240)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    for tid, proc in procs.items():
        assert proc.returncode == 0, f"{tid}:\n{outputs[tid][-3000:]}"

    run = tmp_path / "run"
    rows = read_rows(run / "trials.csv")
    assert sorted(int(r["number"]) for r in rows) == [0, 1, 2, 3]
    assert all(r["state"] == "complete" for r in rows)
    # Each trial ran exactly once, on one of the workers; the chief ran none.
    ran = [int(line.split()[1]) for tid in ("tuner0", "tuner1") for line in outputs[tid].splitlines()
           if line.startswith("trial ")]
    assert sorted(ran) == [0, 1, 2, 3]
    assert sorted(p.name for p in (run / "trials").iterdir()) == ["00000", "00001", "00002", "00003"]
    # One export, by the chief, of the best trial.
    assert "exported to" in outputs["chief"]
    for tid in ("tuner0", "tuner1"):
        assert "worker done" in outputs[tid] and "exported to" not in outputs[tid]
    manifest = json.loads((run / "best" / "automtl.json").read_text())
    assert manifest["trial"]["number"] == int(max(rows, key=lambda r: float(r["score"]))["number"])
    assert (run / "best" / "saved_model" / "saved_model.pb").exists()
