"""Does sharing pay? The searched multi-task model vs a separate search per task, on held-out test data.

For each problem the same search (same space, trials, epochs and seed) runs
once with all tasks and once per task alone (the single-task baseline a
practitioner would run). Each search picks its best trial on its validation
split; the bench then scores that trial's model on a TEST split that no search
saw, and prints each task's primary metric for both and delta-m (Maninis et
al., 2019): the mean over tasks of the relative difference of the multi-task
model's metric from the single-task one, sign-flipped for lower-is-better
metrics (positive: the multi-task model is better).

Problems (all data ships with scikit-learn or is generated):

- ``digits``: the digits demo (8x8 pixels as a table): classify the digit,
  regress its slant.
- ``two_digits``: two scikit-learn digits side by side, overlapping by two
  columns, on one 8x14 image (MultiMNIST-like): classify the left and the
  right digit with the image input's conv trunk. Train and test canvases are
  made from disjoint sets of digits.
- ``factors``: synthetic regressions on 40 inputs, each task labelled on its
  own random 25% of the rows (tasks from different data sets): three are
  different mixes of two shared factors of the inputs, a fourth reads two
  factors of its own.

    python bench/mtl_quality.py [--trials 12] [--epochs 30] [--problems digits,two_digits,factors]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402

from automtl.config import load_experiment  # noqa: E402
from automtl.core.plugins import write_demo  # noqa: E402


@dataclass
class Problem:
    """An experiment file (its data is the search's), a test file no search sees, and the tasks' metrics."""

    name: str
    experiment: Path
    test: Path
    primaries: dict[str, tuple[str, str]]  # task -> (metric, direction)
    rows: tuple[int, int]  # (search rows, test rows)


# -- problems ---------------------------------------------------------------------------------
def digits_problem(folder: Path, space: str | None) -> Problem:
    """The digits demo, with a quarter of its rows held out as the test split."""
    path = write_demo("digits", folder / "demo")
    frame = pd.read_csv(path.parent / "digits.csv")
    order = np.random.default_rng(1).permutation(len(frame))
    n_test = len(frame) // 4
    frame.iloc[np.sort(order[n_test:])].to_csv(folder / "train.csv", index=False)
    frame.iloc[np.sort(order[:n_test])].to_csv(folder / "test.csv", index=False)
    raw = yaml.safe_load(path.read_text())
    raw["data"]["train"] = str(folder / "train.csv")
    raw["space"] = space or _space(folder, VECTOR_SPACE)
    return _write(folder, raw, folder / "test.csv", {"digit": ("accuracy", "maximize"), "slant": ("rmse", "minimize")},
                  (len(frame) - n_test, n_test))


def two_digits_problem(folder: Path, space: str | None, n_train: int = 600, n_test: int = 1000) -> Problem:
    """Left and right digit on one canvas; sources split before pairing, so no test digit was seen."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(2)
    order = rng.permutation(len(digits.target))
    pools = order[: int(0.7 * len(order))], order[int(0.7 * len(order)):]

    def canvases(pool: np.ndarray, n: int) -> dict[str, np.ndarray]:
        left, right = rng.choice(pool, n), rng.choice(pool, n)
        images = np.zeros((n, 8, 14), np.float32)
        images[:, :, :8] = digits.images[left]
        images[:, :, 6:] = np.maximum(images[:, :, 6:], digits.images[right])
        return {"pixels": (images * 255.0 / 16.0).astype(np.uint8), "left": digits.target[left],
                "right": digits.target[right]}

    np.savez(folder / "train.npz", **canvases(pools[0], n_train))
    np.savez(folder / "test.npz", **canvases(pools[1], n_test))
    raw = {
        "name": "two_digits",
        "data": {"train": str(folder / "train.npz"), "valid_fraction": 0.2, "split_seed": 0},
        "inputs": [{"name": "canvas", "type": "image", "array": "pixels"}],
        "tasks": [{"name": "left", "type": "classification", "target": "left"},
                  {"name": "right", "type": "classification", "target": "right"}],
        "space": space or _space(folder, IMAGE_SPACE),
    }
    return _write(folder, raw, folder / "test.npz", {"left": ("accuracy", "maximize"), "right": ("accuracy", "maximize")},
                  (n_train, n_test))


def factors_problem(folder: Path, space: str | None, n_train: int = 1200, n_test: int = 3000,
                    labelled: float = 0.25) -> Problem:
    """Regressions on 40 inputs, each task labelled on its own random 25% of the search rows (as when
    tasks come from different data sets). Three share two factors ``z = U x`` (each task a different
    mix of ``tanh(z)``); a fourth reads two factors of its own. The test rows carry every label."""
    rng = np.random.default_rng(3)
    d, k = 40, 2

    def factors() -> np.ndarray:
        u = rng.normal(size=(d, k))
        return u / np.linalg.norm(u, axis=0)

    shared, other = factors(), factors()
    mixes = rng.normal(size=(4, k))
    related = [f"related_{c}" for c in "abc"]
    names = [*related, "unrelated"]

    def table(n: int, keep: float) -> pd.DataFrame:
        x = rng.normal(size=(n, d))
        frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(d)])
        for t, name in enumerate(names):
            z = x @ (other if name == "unrelated" else shared)
            frame[name] = np.tanh(z) @ mixes[t] + 0.1 * rng.normal(size=n)
            frame.loc[rng.random(n) >= keep, name] = np.nan
        return frame.round(6)

    table(n_train, labelled).to_csv(folder / "train.csv", index=False)
    table(n_test, 1.0).to_csv(folder / "test.csv", index=False)
    raw = {
        "name": "factors",
        "data": {"train": str(folder / "train.csv"), "valid_fraction": 0.2, "split_seed": 0},
        "inputs": [{"name": "x", "type": "tabular", "numeric": ["x*"]}],
        "tasks": [{"name": t, "type": "regression", "target": t} for t in names],
        "space": space or _space(folder, VECTOR_SPACE),
    }
    return _write(folder, raw, folder / "test.csv", {t: ("rmse", "minimize") for t in names}, (n_train, n_test))


#: The benchmark's spaces: how much to share (none, hard, branch, soft) and the trunk, training and
#: regularisation around it. The heads are fixed (one hidden layer of 32), so that the multi-task
#: search explores the same dimensions as each single-task search, plus the sharing.
SHARING = {
    "sharing": {"choice": ["none", "hard", "branch", "soft"]},
    "branch.at": {"int": [0, 3], "when": {"sharing": "branch"}},
    "soft.strength": {"float": [1.0e-3, 1.0], "log": True, "when": {"sharing": "soft"}},
}
HEADS = {"head.depth": 1, "head.units": 32}
VECTOR_SPACE: dict[str, Any] = {
    "description": "benchmark, vector inputs: sharing of the dense levels",
    "parameters": {
        **SHARING,
        "trunk.depth": {"int": [1, 3]},
        "trunk.units": {"int": [32, 256], "log": True},
        "strategy": {"choice": ["joint", "alternating"]},
        "learning_rate": {"float": [1.0e-3, 1.0e-2], "log": True},
        "batch_size": {"choice": [32, 64]},
        "dropout": {"float": [0.0, 0.5]},
        "l2": {"float": [1.0e-6, 1.0e-2], "log": True},
    },
    "per_task": HEADS,
}
#: The image problem's: sharing of conv stages and dense levels, a conv trunk small enough for CPUs
#: (image.stages / image.filters instead of trunk.depth / trunk.units), grid pooling (a layout task).
IMAGE_SPACE: dict[str, Any] = {
    "description": "benchmark, images: sharing of conv stages and dense levels",
    "parameters": {
        **SHARING,
        "image.stages": 2,
        "image.filters": {"choice": [16, 32]},
        "image.pool": "grid",
        "trunk.depth": {"int": [0, 1]},
        "trunk.units": {"choice": [64, 128]},
        "strategy": "joint",
        "learning_rate": {"float": [1.0e-3, 1.0e-2], "log": True},
        "batch_size": {"choice": [32, 64]},
        "dropout": {"float": [0.0, 0.4]},
        "l2": {"float": [1.0e-7, 1.0e-3], "log": True},
    },
    "per_task": HEADS,
}

PROBLEMS = {"digits": digits_problem, "two_digits": two_digits_problem, "factors": factors_problem}


def _space(folder: Path, space: dict) -> str:
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return str(path)


def _write(folder: Path, raw: dict, test: Path, primaries: dict, rows: tuple[int, int]) -> Problem:
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return Problem(raw["name"], path, test, primaries, rows)


# -- searching and scoring on the test split --------------------------------------------------
def search(problem: Problem, settings: dict, tasks: list[str] | None, out: Path) -> tuple[dict[str, dict], Any, float]:
    """One search (all tasks, or the given ones); the best trial's test metrics, its record and the wall time."""
    from automtl.run.search import run_search

    exp = load_experiment(problem.experiment, {**settings, "out": out})
    if tasks is not None:
        exp = exp.model_copy(update={"tasks": [t for t in exp.tasks if t.name in tasks], "name": f"{exp.name}-{tasks[0]}"})
    started = time.perf_counter()
    summary = run_search(exp, console=Console(quiet=True), quiet=True, report=False)
    seconds = time.perf_counter() - started
    assert summary.best is not None and summary.export_dir is not None, f"{problem.name}: no trial completed"
    return test_metrics(exp, summary.export_dir / "model.keras", problem.test), summary.best, seconds


def test_metrics(exp, model_path: Path, test_file: Path) -> dict[str, dict[str, float]]:
    """The model's metrics per task on the test file, with the plugins fitted on the search's training split."""
    import keras

    from automtl.data.arrays import to_arrays
    from automtl.data.prepare import instantiate, prepare
    from automtl.data.readers import read_table
    from automtl.model import layers  # noqa: F401  (registers automtl's layers for loading)
    from automtl.training.trainer import to_tensors

    encoders, tasks = instantiate(exp)
    prepare(exp, encoders, tasks)  # the same split and fitted statistics as the search
    for plugin in (*encoders, *tasks):
        plugin.register_keras_objects()
    arrays = to_arrays(encoders, tasks, read_table(test_file, role="test data"))
    model = keras.saving.load_model(model_path)
    pred = {k: np.asarray(v) for k, v in model(to_tensors(arrays.x), training=False).items()}
    return {t.name: t.evaluate(arrays.y[t.name], arrays.mask[t.name], pred[t.name].astype(np.float64)) for t in tasks}


def delta(multi: float, single: float, direction: str) -> float:
    """Relative difference in %, positive when the multi-task value is better."""
    sign = 1.0 if direction == "maximize" else -1.0
    return sign * (multi - single) / abs(single) * 100.0


def describe(params: dict[str, Any]) -> str:
    keys = ("sharing", "branch.at", "soft.strength", "cross_stitch.self", "experts", "ple.levels", "strategy",
            "trunk.depth", "image.filters")
    return ", ".join(f"{k}={params[k]:.3g}" if isinstance(params[k], float) else f"{k}={params[k]}"
                     for k in keys if k in params)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--space", default=None, help="one space for every problem (default: each problem's own)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    names = [p.strip() for p in args.problems.split(",") if p.strip()]
    unknown = set(names) - set(PROBLEMS)
    if unknown:
        ap.error(f"unknown problem(s) {sorted(unknown)}; known: {', '.join(PROBLEMS)}")
    settings = {"trials": args.trials, "epochs": args.epochs, "seed": args.seed, "trials_per_process": 0}
    root = Path(tempfile.mkdtemp(prefix="automtl-quality-"))
    load = os.getloadavg()[0]
    print(f"{args.trials} trials x up to {args.epochs} epochs per search, seed {args.seed}; "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at start", flush=True)
    started = time.perf_counter()
    results = {}
    for name in names:
        folder = root / name
        folder.mkdir()
        problem = PROBLEMS[name](folder, args.space)
        multi, best, t_multi = search(problem, settings, None, folder / "runs" / "multi")
        singles, t_single = {}, 0.0
        for task in problem.primaries:
            single, _, seconds = search(problem, settings, [task], folder / "runs" / f"single-{task}")
            singles[task] = single[task]
            t_single += seconds
        print(f"\n{name}: {problem.rows[0]} search rows (train + validation), {problem.rows[1]} test rows; "
              f"searches {t_multi:.0f} s multi-task, {t_single:.0f} s single-task", flush=True)
        print(f"  best multi-task trial: {describe(best.params)}")
        print(f"  {'task':<11}{'metric':<10}{'single-task':>12}{'multi-task':>12}{'delta %':>9}")
        deltas = []
        for task, (metric, direction) in problem.primaries.items():
            s, m = singles[task][metric], multi[task][metric]
            deltas.append(delta(m, s, direction))
            print(f"  {task:<11}{metric:<10}{s:>12.4f}{m:>12.4f}{deltas[-1]:>+9.2f}")
        results[name] = sum(deltas) / len(deltas)
        print(f"  delta-m {results[name]:+.2f}%", flush=True)
    total = time.perf_counter() - started
    print(f"\nwhole benchmark {total / 60:.1f} min; load average {os.getloadavg()[0]:.1f} at the end "
          f"(above {os.cpu_count()}: the machine was shared)")
    print("delta-m per problem: " + ", ".join(f"{k} {v:+.2f}%" for k, v in results.items()))
    print(f"min delta-m over {len(results)} problems: {min(results.values()):+.1f}%")


if __name__ == "__main__":
    main()
